//! Provisioning under `/api/v1`: templates, assistants (and their sync to VAPI), phone numbers
//! (bought through Twilio, linked in VAPI) and integrations.
//!
//! Every write is a command on the Organization aggregate; reads come from the aggregate's
//! own state (`state.organizations.load(org)`), which carries each assistant's whole
//! configuration, each number's provider ids, purchases and integration configs. These are a
//! handful of records per organization, so no read model is needed and every answer reflects
//! the caller's own writes.
//!
//! Provider calls come first and the event after, so nothing is recorded as done that the
//! provider did not do; a provider refusal answers 502 `provider_rejected`, an unreachable
//! provider 503 `provider_unavailable` (every request is in `outbound_requests`).

pub mod assistants;
pub mod billing;
pub mod integrations;
pub mod onboarding;
pub mod phone_numbers;
pub mod templates;
pub mod test_calls;
pub mod webhook_endpoints;
pub mod webhook_payloads;

use aggregates::organization::{Organization, OrganizationCommand, Role};
use poem::Request;
use serde_json::json;

use crate::http::error::ApiError;
use crate::http::query::principal::{self, OrganizationHeader, Principal};
use crate::http::query::reject_unknown_parameters;
use crate::providers::twilio::Twilio;
use crate::providers::vapi::Vapi;
use crate::providers::ProviderError;
use crate::state::AppState;

pub type ProvisioningApi = (
    templates::TemplatesApi,
    assistants::AssistantsApi,
    phone_numbers::PhoneNumbersApi,
    integrations::IntegrationsApi,
    webhook_endpoints::WebhookEndpointsApi,
    billing::BillingActionsApi,
    onboarding::OnboardingApi,
);

pub fn api() -> ProvisioningApi {
    (
        templates::TemplatesApi,
        assistants::AssistantsApi,
        phone_numbers::PhoneNumbersApi,
        integrations::IntegrationsApi,
        webhook_endpoints::WebhookEndpointsApi,
        billing::BillingActionsApi,
        onboarding::OnboardingApi,
    )
}

/// The principal and its (live) organization; no query parameters allowed.
pub(crate) async fn begin(
    state: &AppState,
    req: &Request,
    auth: &OrganizationHeader,
) -> Result<(Principal, Organization), ApiError> {
    let principal = principal::principal(state, auth).await?;
    reject_unknown_parameters(req, &[])?;
    let organization = load(state, &principal).await?;
    Ok((principal, organization))
}

pub(crate) async fn load(
    state: &AppState,
    principal: &Principal,
) -> Result<Organization, ApiError> {
    let (organization, _) = state.organizations.load(&principal.org()).await?;
    Ok(organization)
}

/// 403 unless the principal may change assistants (member and above, write-scoped keys).
/// Checked before any provider is called; the aggregate checks again.
pub(crate) fn require_write(principal: &Principal) -> Result<(), ApiError> {
    principal.require_write()
}

/// 403 unless the principal may manage phone numbers and integrations (admin and above, or
/// a write-scoped API key, as the Organization aggregate allows). Checked before any provider
/// is called, so a refused caller never makes us buy or release anything.
pub(crate) fn require_manage(principal: &Principal) -> Result<(), ApiError> {
    principal.require_write()?;
    let admin = principal::rank(principal.role) >= principal::rank(Role::Admin);
    if admin || matches!(principal.identity, principal::Identity::ApiKey { .. }) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "forbidden",
            "phone numbers and integrations need the admin role or higher",
        ))
    }
}

pub(crate) use crate::http::idempotency_key;

/// Runs one command on the principal's organization; returns the last position written and
/// the organization's state after it.
pub(crate) async fn execute(
    state: &AppState,
    principal: &Principal,
    command: OrganizationCommand,
    idempotency_key: Option<String>,
) -> Result<(i64, Organization), ApiError> {
    let done = crate::app::organizations::execute_as(
        state,
        &principal.caller(),
        "provisioning",
        idempotency_key.as_deref(),
        command,
    )
    .await?;
    Ok((done.result.last_position, done.state))
}

/// A provider failure in our error shape: 502 when the provider refused, 503 when it could
/// not be reached (or kept failing).
pub(crate) fn provider_error(err: ProviderError) -> ApiError {
    match err {
        ProviderError::Rejected {
            provider,
            status,
            body,
        } => {
            tracing::warn!(provider, status, %body, "provider refused a request");
            ApiError::bad_gateway(
                "provider_rejected",
                format!("{provider} refused the request (status {status})"),
                Some(json!({ "provider": provider, "status": status, "body": body })),
            )
        }
        ProviderError::Unavailable {
            provider, reason, ..
        } => {
            tracing::warn!(provider, %reason, "provider unavailable");
            ApiError::unavailable(
                "provider_unavailable",
                format!("{provider} is unavailable; retry later"),
            )
            .with_details(json!({ "provider": provider, "reason": reason }))
        }
        ProviderError::Record(e) => ApiError::internal(e),
    }
}

pub(crate) fn vapi(state: &AppState) -> Vapi {
    Vapi::new(state.config.vapi.clone(), state.store.clone())
}

pub(crate) fn twilio(state: &AppState) -> Twilio {
    Twilio::new(&state.config, state.store.clone())
}

/// A non-blank, trimmed, length-limited text field.
pub(crate) fn field(name: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(
            ApiError::unprocessable("invalid_input", format!("{name} must not be empty"))
                .with_details(json!({ "field": name })),
        );
    }
    if value.chars().count() > max {
        return Err(ApiError::unprocessable(
            "invalid_input",
            format!("{name} may be at most {max} characters"),
        )
        .with_details(json!({ "field": name })));
    }
    Ok(value.to_string())
}

pub(crate) use crate::app::assistants::random_secret;
