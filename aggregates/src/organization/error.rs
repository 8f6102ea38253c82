//! Organization errors.

use thiserror::Error;

/// Rejections from the [`super::Organization`] aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OrganizationError {
    #[error("organization not found")]
    NotFound,
    #[error("organization already exists")]
    AlreadyExists,
    #[error("forbidden")]
    Forbidden,
    #[error("the last owner cannot be removed or demoted")]
    LastOwner,
    #[error("member not found")]
    MemberNotFound,
    #[error("user is already a member")]
    AlreadyMember,
    #[error("phone number not found")]
    PhoneNumberNotFound,
    #[error("phone number is already provisioned")]
    NumberAlreadyProvisioned,
    #[error("a purchase with this idempotency key is still in progress")]
    PurchaseInProgress,
    #[error("a sync of this assistant is still in progress")]
    SyncInProgress,
    #[error("the authorization state is unknown or was already used; start again")]
    InvalidAuthorizationState,
    #[error("the authorization state expired; start again")]
    AuthorizationStateExpired,
    #[error("assistant not found")]
    AssistantNotFound,
    #[error("a contact with this phone number already exists: {0}")]
    ContactExists(String),
    #[error("contact not found")]
    ContactNotFound,
    #[error("integration not found")]
    IntegrationNotFound,
    #[error("webhook endpoint not found")]
    WebhookEndpointNotFound,
    #[error("unknown event type `{0}`; see GET /api/v1/webhook-endpoints/event-types")]
    UnknownEventType(String),
    #[error("an organization may have at most 20 webhook endpoints")]
    TooManyWebhookEndpoints,
    #[error("API key not found")]
    ApiKeyNotFound,
    #[error("the organization has no webhook secret yet; rotate to create one")]
    NoWebhookSecret,
    #[error("the webhook secret was already shown once; rotate it to get a new one")]
    WebhookSecretAlreadyRevealed,
    #[error("the organization already has another Stripe customer")]
    BillingCustomerExists,
    #[error("onboarding was already requested for this organization")]
    OnboardingAlreadyRequested,
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl OrganizationError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        use OrganizationError::*;
        match self {
            NotFound => "organization_not_found",
            AlreadyExists => "organization_already_exists",
            BillingCustomerExists => "billing_customer_exists",
            OnboardingAlreadyRequested => "onboarding_already_requested",
            Forbidden => "forbidden",
            LastOwner => "last_owner",
            MemberNotFound => "member_not_found",
            AlreadyMember => "already_member",
            PhoneNumberNotFound => "phone_number_not_found",
            NumberAlreadyProvisioned => "number_already_provisioned",
            PurchaseInProgress => "purchase_in_progress",
            SyncInProgress => "sync_in_progress",
            InvalidAuthorizationState => "invalid_state",
            AuthorizationStateExpired => "expired_state",
            AssistantNotFound => "assistant_not_found",
            ContactExists(_) => "contact_exists",
            ContactNotFound => "contact_not_found",
            IntegrationNotFound => "integration_not_found",
            WebhookEndpointNotFound => "webhook_endpoint_not_found",
            UnknownEventType(_) => "unknown_event_type",
            TooManyWebhookEndpoints => "too_many_webhook_endpoints",
            ApiKeyNotFound => "api_key_not_found",
            NoWebhookSecret => "no_webhook_secret",
            WebhookSecretAlreadyRevealed => "webhook_secret_already_revealed",
            InvalidInput(_) => "invalid_input",
        }
    }
}
