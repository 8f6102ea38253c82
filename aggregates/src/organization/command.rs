//! Organization commands and the value types they carry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::common::Timestamp;

/// Member role, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
    /// Reads like a viewer and may also read the audit trail (personal data masked).
    Auditor,
}

/// Whether a member has accepted their invite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    Invited,
    Active,
}

/// What an organization API key may do: `read` (queries) or `write` (also commands a
/// member may issue). Managing members, keys and settings always needs a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKeyScope {
    Read,
    Write,
}

/// Where a contact came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContactSource {
    Manual,
    Caller,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationSettings {
    pub sms_enabled: bool,
    pub sms_numbers: Vec<String>,
    pub email_enabled: bool,
    pub email_addresses: Vec<String>,
    /// Send the post-call summary (every processed call) on the enabled channels.
    #[serde(default = "yes")]
    pub post_call_summary: bool,
    /// Post-call summaries wait for the end of these hours (in the organization's time zone);
    /// urgent messages and driver call-outs do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
    /// Usage alerts (80% and 100% of the plan's minutes) also go by SMS to `sms_numbers`
    /// (they always go by email to the owners and admins).
    #[serde(default)]
    pub usage_alerts_sms: bool,
}

/// Local times `HH:MM`; `start` after `end` spans midnight (22:00-07:00).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    pub start: String,
    pub end: String,
}

fn yes() -> bool {
    true
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            sms_enabled: false,
            sms_numbers: Vec::new(),
            email_enabled: false,
            email_addresses: Vec::new(),
            post_call_summary: true,
            quiet_hours: None,
            usage_alerts_sms: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TransferNumbers {
    pub dispatch: Option<String>,
    pub manager: Option<String>,
    pub emergency: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OrganizationSettings {
    pub notifications: NotificationSettings,
    pub transfer_numbers: TransferNumbers,
    pub business_hours: Option<serde_json::Value>,
    pub timezone: Option<String>,
}

/// How VAPI authenticates its webhooks to us for this organization. Secrets are sealed (see
/// the service's `secrets` module): the aggregate never sees them in plaintext.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WebhookAuth {
    pub shared_secret: Option<String>,
    pub hmac_secret: Option<String>,
    /// The secret before the last rotation, accepted until `previous_valid_until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_valid_until: Option<chrono::DateTime<chrono::Utc>>,
    /// The current secret was shown to someone (it is shown once).
    #[serde(default)]
    pub revealed: bool,
}

impl WebhookAuth {
    /// The current secret (the same one serves all three VAPI authentication forms).
    pub fn current(&self) -> Option<&str> {
        self.shared_secret
            .as_deref()
            .or(self.hmac_secret.as_deref())
    }
}

/// Commands accepted by the [`super::Organization`] aggregate. `actor` is
/// `user:<id>`, `api_key:<id>`, `system[...]` or `provider:<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrganizationCommand {
    Create {
        id: Uuid,
        name: String,
        owner_user_id: String,
        owner_email: String,
        actor: String,
    },
    UpdateProfile {
        name: Option<String>,
        actor: String,
    },
    UpdateSettings {
        settings: OrganizationSettings,
        actor: String,
    },
    ConfigureWebhookAuth {
        auth: WebhookAuth,
        actor: String,
    },
    /// Replaces the webhook secret with `secret` (sealed); the old one stays valid until
    /// `previous_valid_until`. The new secret is shown to the caller once.
    RotateWebhookSecret {
        secret: String,
        previous_valid_until: chrono::DateTime<chrono::Utc>,
        actor: String,
    },
    /// Shows the current webhook secret, once.
    RevealWebhookSecret {
        actor: String,
    },
    InviteMember {
        user_id: String,
        email: String,
        role: Role,
        actor: String,
    },
    AcceptInvite {
        user_id: String,
        actor: String,
    },
    ChangeMemberRole {
        user_id: String,
        role: Role,
        actor: String,
    },
    RemoveMember {
        user_id: String,
        actor: String,
    },
    ProvisionPhoneNumber {
        phone_number_id: String,
        number: String,
        provider_sid: String,
        assistant_id: Option<String>,
        /// The number's id in VAPI, when it is linked there.
        #[serde(default)]
        vapi_phone_number_id: Option<String>,
        actor: String,
    },
    /// The intent to buy a number, recorded BEFORE the provider is called: a retry with the
    /// same `purchase_id` finds it (in progress, failed or completed) and never buys twice.
    /// The outcome is `ProvisionPhoneNumber` (with `phone_number_id = purchase_id`) or
    /// `FailPhoneNumberPurchase`.
    RequestPhoneNumberPurchase {
        purchase_id: String,
        /// A specific number (E.164) ...
        number: Option<String>,
        /// ... or any number in this area code.
        area_code: Option<String>,
        assistant_id: Option<String>,
        /// When the intent is recorded (a retry after `stale_after_secs` may resume it).
        at: Timestamp,
        actor: String,
    },
    /// The number an area-code purchase is about to buy, recorded BEFORE Twilio is asked to
    /// buy it, so a retry after a crash knows which number to look for in Twilio.
    ChoosePurchaseNumber {
        purchase_id: String,
        number: String,
        actor: String,
    },
    /// Takes over a purchase whose intent is older than `stale_after_secs` (its request
    /// crashed or hung). Only one retry wins the take-over (optimistic concurrency); it then
    /// checks Twilio for the number and either records it or abandons the purchase.
    ResumePhoneNumberPurchase {
        purchase_id: String,
        at: Timestamp,
        stale_after_secs: i64,
        actor: String,
    },
    /// A taken-over purchase bought nothing: it is closed and may be requested again.
    AbandonPhoneNumberPurchase {
        purchase_id: String,
        reason: String,
        actor: String,
    },
    /// The provider refused or failed; nothing is provisioned. `provider_sid` names a number
    /// that was bought and could not be released again (for an operator to clean up).
    FailPhoneNumberPurchase {
        purchase_id: String,
        stage: String,
        reason: String,
        provider_sid: Option<String>,
        actor: String,
    },
    ConfigurePhoneNumber {
        phone_number_id: String,
        /// Replaces the assignment (`None` unassigns).
        assistant_id: Option<String>,
        friendly_name: Option<String>,
        actor: String,
    },
    ReleasePhoneNumber {
        phone_number_id: String,
        actor: String,
    },
    CreateAssistant {
        assistant_id: String,
        name: String,
        template_slug: Option<String>,
        system_prompt: String,
        first_message: Option<String>,
        voice_id: Option<String>,
        model: Option<String>,
        functions: Vec<String>,
        variables: BTreeMap<String, String>,
        actor: String,
    },
    /// `None` fields are left unchanged.
    UpdateAssistant {
        assistant_id: String,
        name: Option<String>,
        template_slug: Option<String>,
        system_prompt: Option<String>,
        first_message: Option<String>,
        voice_id: Option<String>,
        model: Option<String>,
        functions: Option<Vec<String>>,
        variables: Option<BTreeMap<String, String>>,
        actor: String,
    },
    /// Claims the assistant's sync BEFORE VAPI is called: a second sync while one runs (and
    /// is younger than `stale_after_secs`) is refused, so two syncs never create two VAPI
    /// assistants. Ends with `MarkAssistantSynced` or `FailAssistantSync`.
    BeginAssistantSync {
        assistant_id: String,
        sync_id: String,
        at: Timestamp,
        stale_after_secs: i64,
        actor: String,
    },
    FailAssistantSync {
        assistant_id: String,
        sync_id: String,
        reason: String,
        actor: String,
    },
    MarkAssistantSynced {
        assistant_id: String,
        vapi_assistant_id: String,
        actor: String,
    },
    DeleteAssistant {
        assistant_id: String,
        actor: String,
    },
    CreateContact {
        contact_id: String,
        phone_number: String,
        name: Option<String>,
        email: Option<String>,
        notes: Option<String>,
        source: ContactSource,
        actor: String,
    },
    /// `None` fields are left unchanged.
    UpdateContact {
        contact_id: String,
        name: Option<String>,
        email: Option<String>,
        notes: Option<String>,
        actor: String,
    },
    DeleteContact {
        contact_id: String,
        actor: String,
    },
    /// An OAuth authorization began: the SHA-256 of the `state` sent to the provider, valid
    /// until `expires_at` and usable once.
    StartIntegrationAuthorization {
        provider: String,
        state_hash: String,
        expires_at: Timestamp,
        actor: String,
    },
    /// The OAuth callback presents its `state`: unknown, used, other provider's or expired
    /// states are refused; a good one is used up (before the code is exchanged).
    UseIntegrationAuthorization {
        provider: String,
        state_hash: String,
        at: Timestamp,
        actor: String,
    },
    ConnectIntegration {
        provider: String,
        config: serde_json::Value,
        actor: String,
    },
    ConfigureIntegration {
        provider: String,
        config: serde_json::Value,
        actor: String,
    },
    DisconnectIntegration {
        provider: String,
        actor: String,
    },
    RegisterWebhookEndpoint {
        endpoint_id: String,
        url: String,
        secret: String,
        event_types: Vec<String>,
        actor: String,
    },
    RemoveWebhookEndpoint {
        endpoint_id: String,
        actor: String,
    },
    /// An outbound webhook endpoint of `/webhook-endpoints` (`secret` sealed, `event_types`
    /// from [`crate::outbound::EVENT_TYPES`]).
    CreateWebhookEndpoint {
        endpoint_id: String,
        url: String,
        description: Option<String>,
        event_types: Vec<String>,
        secret: String,
        enabled: bool,
        actor: String,
    },
    /// Changes what is given; `enabled: Some(true)` re-enables a disabled endpoint.
    UpdateWebhookEndpoint {
        endpoint_id: String,
        url: Option<String>,
        description: Option<String>,
        event_types: Option<Vec<String>>,
        enabled: Option<bool>,
        actor: String,
    },
    /// A new signing secret (sealed); the previous one keeps signing until `previous_until`.
    RotateWebhookEndpointSecret {
        endpoint_id: String,
        secret: String,
        previous_until: Timestamp,
        actor: String,
    },
    /// Disabled by the delivery process (the receiver answered 410, or dead letters piled
    /// up); a no-op when already disabled.
    DisableWebhookEndpoint {
        endpoint_id: String,
        reason: String,
        actor: String,
    },
    /// `key_hash` is the SHA-256 of the secret, which is shown once and never stored.
    CreateApiKey {
        key_id: String,
        name: String,
        key_hash: String,
        scopes: Vec<ApiKeyScope>,
        actor: String,
    },
    RevokeApiKey {
        key_id: String,
        actor: String,
    },
    Delete {
        actor: String,
    },
    /// The organization's Stripe customer, once created (the first one recorded stays).
    SetBillingCustomer {
        customer_id: String,
        actor: String,
    },
    /// The owner asks for the onboarding process (one per organization).
    RequestOnboarding {
        business_name: String,
        template_slug: String,
        variables: BTreeMap<String, String>,
        area_code: Option<String>,
        /// Where the welcome email goes.
        email: String,
        at: Timestamp,
        actor: String,
    },
}

/// What a command needs from a user or API-key actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Permission {
    /// Ordinary writes (contacts, assistants): member and above.
    Write,
    /// Members, settings, phone numbers, integrations, webhooks: admin and above.
    Manage,
    /// Deleting the organization, granting or taking away ownership: owner.
    Own,
}

impl OrganizationCommand {
    /// The actor string the command was issued by.
    pub fn actor(&self) -> &str {
        use OrganizationCommand::*;
        match self {
            Create { actor, .. }
            | UpdateProfile { actor, .. }
            | UpdateSettings { actor, .. }
            | ConfigureWebhookAuth { actor, .. }
            | RotateWebhookSecret { actor, .. }
            | RevealWebhookSecret { actor }
            | InviteMember { actor, .. }
            | AcceptInvite { actor, .. }
            | ChangeMemberRole { actor, .. }
            | RemoveMember { actor, .. }
            | ProvisionPhoneNumber { actor, .. }
            | RequestPhoneNumberPurchase { actor, .. }
            | ChoosePurchaseNumber { actor, .. }
            | ResumePhoneNumberPurchase { actor, .. }
            | AbandonPhoneNumberPurchase { actor, .. }
            | FailPhoneNumberPurchase { actor, .. }
            | ConfigurePhoneNumber { actor, .. }
            | ReleasePhoneNumber { actor, .. }
            | CreateAssistant { actor, .. }
            | UpdateAssistant { actor, .. }
            | BeginAssistantSync { actor, .. }
            | FailAssistantSync { actor, .. }
            | MarkAssistantSynced { actor, .. }
            | DeleteAssistant { actor, .. }
            | CreateContact { actor, .. }
            | UpdateContact { actor, .. }
            | DeleteContact { actor, .. }
            | StartIntegrationAuthorization { actor, .. }
            | UseIntegrationAuthorization { actor, .. }
            | ConnectIntegration { actor, .. }
            | ConfigureIntegration { actor, .. }
            | DisconnectIntegration { actor, .. }
            | RegisterWebhookEndpoint { actor, .. }
            | RemoveWebhookEndpoint { actor, .. }
            | CreateWebhookEndpoint { actor, .. }
            | UpdateWebhookEndpoint { actor, .. }
            | RotateWebhookEndpointSecret { actor, .. }
            | DisableWebhookEndpoint { actor, .. }
            | CreateApiKey { actor, .. }
            | RevokeApiKey { actor, .. }
            | SetBillingCustomer { actor, .. }
            | RequestOnboarding { actor, .. }
            | Delete { actor } => actor,
        }
    }

    /// Baseline permission; member commands may need more (see the aggregate).
    pub(crate) fn permission(&self) -> Permission {
        use OrganizationCommand::*;
        match self {
            CreateAssistant { .. }
            | UpdateAssistant { .. }
            | BeginAssistantSync { .. }
            | FailAssistantSync { .. }
            | MarkAssistantSynced { .. }
            | DeleteAssistant { .. }
            | CreateContact { .. }
            | UpdateContact { .. }
            | DeleteContact { .. } => Permission::Write,
            Delete { .. } | RequestOnboarding { .. } => Permission::Own,
            _ => Permission::Manage,
        }
    }
}
