//! Organization events.

use std::collections::BTreeMap;

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::common::Timestamp;

use super::command::{ApiKeyScope, ContactSource, OrganizationSettings, Role, WebhookAuth};

/// Events of the [`super::Organization`] aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrganizationEvent {
    OrganizationCreated {
        id: Uuid,
        name: String,
        owner_user_id: String,
        owner_email: String,
    },
    ProfileUpdated {
        name: Option<String>,
    },
    SettingsUpdated {
        settings: OrganizationSettings,
    },
    WebhookAuthConfigured {
        auth: WebhookAuth,
    },
    WebhookSecretRotated {
        /// Sealed.
        secret: String,
        previous_valid_until: Option<chrono::DateTime<chrono::Utc>>,
    },
    WebhookSecretRevealed {},
    MemberInvited {
        user_id: String,
        email: String,
        role: Role,
    },
    MemberJoined {
        user_id: String,
        email: String,
        role: Role,
    },
    MemberRoleChanged {
        user_id: String,
        role: Role,
    },
    MemberRemoved {
        user_id: String,
    },
    PhoneNumberProvisioned {
        phone_number_id: String,
        number: String,
        provider_sid: String,
        assistant_id: Option<String>,
        /// Added later: absent in older payloads (read as `None`).
        #[serde(default)]
        vapi_phone_number_id: Option<String>,
    },
    PhoneNumberPurchaseRequested {
        purchase_id: String,
        number: Option<String>,
        area_code: Option<String>,
        assistant_id: Option<String>,
        /// Added later: absent in older payloads (such an intent counts as stale).
        #[serde(default)]
        requested_at: Option<Timestamp>,
    },
    PhoneNumberPurchaseNumberChosen {
        purchase_id: String,
        number: String,
    },
    PhoneNumberPurchaseResumed {
        purchase_id: String,
        resumed_at: Timestamp,
    },
    PhoneNumberPurchaseAbandoned {
        purchase_id: String,
        reason: String,
    },
    PhoneNumberPurchaseFailed {
        purchase_id: String,
        stage: String,
        reason: String,
        provider_sid: Option<String>,
    },
    PhoneNumberConfigured {
        phone_number_id: String,
        assistant_id: Option<String>,
        friendly_name: Option<String>,
    },
    PhoneNumberReleased {
        phone_number_id: String,
    },
    AssistantCreated {
        assistant_id: String,
        name: String,
        template_slug: Option<String>,
        system_prompt: String,
        first_message: Option<String>,
        voice_id: Option<String>,
        model: Option<String>,
        functions: Vec<String>,
        variables: BTreeMap<String, String>,
    },
    /// `None` fields were left unchanged.
    AssistantUpdated {
        assistant_id: String,
        name: Option<String>,
        template_slug: Option<String>,
        system_prompt: Option<String>,
        first_message: Option<String>,
        voice_id: Option<String>,
        model: Option<String>,
        functions: Option<Vec<String>>,
        variables: Option<BTreeMap<String, String>>,
    },
    AssistantSyncStarted {
        assistant_id: String,
        sync_id: String,
        started_at: Timestamp,
    },
    AssistantSyncFailed {
        assistant_id: String,
        sync_id: String,
        reason: String,
    },
    AssistantSynced {
        assistant_id: String,
        vapi_assistant_id: String,
    },
    AssistantDeleted {
        assistant_id: String,
    },
    ContactCreated {
        contact_id: String,
        phone_number: String,
        name: Option<String>,
        email: Option<String>,
        notes: Option<String>,
        source: ContactSource,
    },
    /// `None` fields were left unchanged.
    ContactUpdated {
        contact_id: String,
        name: Option<String>,
        email: Option<String>,
        notes: Option<String>,
    },
    ContactDeleted {
        contact_id: String,
    },
    IntegrationAuthorizationStarted {
        provider: String,
        state_hash: String,
        expires_at: Timestamp,
    },
    IntegrationAuthorizationUsed {
        provider: String,
        state_hash: String,
    },
    IntegrationConnected {
        provider: String,
        config: serde_json::Value,
    },
    IntegrationConfigured {
        provider: String,
        config: serde_json::Value,
    },
    IntegrationDisconnected {
        provider: String,
    },
    WebhookEndpointRegistered {
        endpoint_id: String,
        url: String,
        secret: String,
        event_types: Vec<String>,
    },
    WebhookEndpointRemoved {
        endpoint_id: String,
    },
    WebhookEndpointCreated {
        endpoint_id: String,
        url: String,
        description: Option<String>,
        event_types: Vec<String>,
        /// Sealed.
        secret: String,
        enabled: bool,
    },
    /// Only the changed fields are `Some`.
    WebhookEndpointUpdated {
        endpoint_id: String,
        url: Option<String>,
        description: Option<String>,
        event_types: Option<Vec<String>>,
    },
    WebhookEndpointEnabled {
        endpoint_id: String,
    },
    WebhookEndpointDisabled {
        endpoint_id: String,
        reason: Option<String>,
    },
    WebhookEndpointSecretRotated {
        endpoint_id: String,
        /// Sealed.
        secret: String,
        previous_until: Timestamp,
    },
    ApiKeyCreated {
        key_id: String,
        name: String,
        key_hash: String,
        scopes: Vec<ApiKeyScope>,
    },
    ApiKeyRevoked {
        key_id: String,
    },
    OrganizationDeleted {},
    BillingCustomerCreated {
        customer_id: String,
    },
    OnboardingRequested {
        business_name: String,
        template_slug: String,
        variables: BTreeMap<String, String>,
        area_code: Option<String>,
        email: String,
        requested_by: String,
        at: Timestamp,
    },
}

impl OrganizationEvent {
    /// Stable event type name (equal to the variant name).
    pub fn name(&self) -> &'static str {
        use OrganizationEvent::*;
        match self {
            OrganizationCreated { .. } => "OrganizationCreated",
            ProfileUpdated { .. } => "ProfileUpdated",
            SettingsUpdated { .. } => "SettingsUpdated",
            WebhookAuthConfigured { .. } => "WebhookAuthConfigured",
            WebhookSecretRotated { .. } => "WebhookSecretRotated",
            WebhookSecretRevealed { .. } => "WebhookSecretRevealed",
            MemberInvited { .. } => "MemberInvited",
            MemberJoined { .. } => "MemberJoined",
            MemberRoleChanged { .. } => "MemberRoleChanged",
            MemberRemoved { .. } => "MemberRemoved",
            PhoneNumberProvisioned { .. } => "PhoneNumberProvisioned",
            PhoneNumberPurchaseRequested { .. } => "PhoneNumberPurchaseRequested",
            PhoneNumberPurchaseNumberChosen { .. } => "PhoneNumberPurchaseNumberChosen",
            PhoneNumberPurchaseResumed { .. } => "PhoneNumberPurchaseResumed",
            PhoneNumberPurchaseAbandoned { .. } => "PhoneNumberPurchaseAbandoned",
            PhoneNumberPurchaseFailed { .. } => "PhoneNumberPurchaseFailed",
            PhoneNumberConfigured { .. } => "PhoneNumberConfigured",
            PhoneNumberReleased { .. } => "PhoneNumberReleased",
            AssistantCreated { .. } => "AssistantCreated",
            AssistantUpdated { .. } => "AssistantUpdated",
            AssistantSyncStarted { .. } => "AssistantSyncStarted",
            AssistantSyncFailed { .. } => "AssistantSyncFailed",
            AssistantSynced { .. } => "AssistantSynced",
            AssistantDeleted { .. } => "AssistantDeleted",
            ContactCreated { .. } => "ContactCreated",
            ContactUpdated { .. } => "ContactUpdated",
            ContactDeleted { .. } => "ContactDeleted",
            IntegrationAuthorizationStarted { .. } => "IntegrationAuthorizationStarted",
            IntegrationAuthorizationUsed { .. } => "IntegrationAuthorizationUsed",
            IntegrationConnected { .. } => "IntegrationConnected",
            IntegrationConfigured { .. } => "IntegrationConfigured",
            IntegrationDisconnected { .. } => "IntegrationDisconnected",
            WebhookEndpointRegistered { .. } => "WebhookEndpointRegistered",
            WebhookEndpointRemoved { .. } => "WebhookEndpointRemoved",
            WebhookEndpointCreated { .. } => "WebhookEndpointCreated",
            WebhookEndpointUpdated { .. } => "WebhookEndpointUpdated",
            WebhookEndpointEnabled { .. } => "WebhookEndpointEnabled",
            WebhookEndpointDisabled { .. } => "WebhookEndpointDisabled",
            WebhookEndpointSecretRotated { .. } => "WebhookEndpointSecretRotated",
            ApiKeyCreated { .. } => "ApiKeyCreated",
            ApiKeyRevoked { .. } => "ApiKeyRevoked",
            OrganizationDeleted {} => "OrganizationDeleted",
            BillingCustomerCreated { .. } => "BillingCustomerCreated",
            OnboardingRequested { .. } => "OnboardingRequested",
        }
    }
}

impl DomainEvent for OrganizationEvent {
    fn event_type(&self) -> String {
        self.name().to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
