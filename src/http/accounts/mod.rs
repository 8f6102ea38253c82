//! Accounts over HTTP: authentication (`/api/v1/auth/*`), organizations, members and
//! organization API keys.
//!
//! Every write is a command on an aggregate (`User`, `UserEmail`, `Organization`) recorded
//! with the caller as actor. Security-relevant answers (sign-up, sign-in, sign-out, password
//! reset, key creation and revocation) wait until the read models reflect the write, so a
//! token works — or stops working — as soon as the answer arrives; authentication also
//! re-checks every session and key against its aggregate (see `query::principal`).

pub mod api_keys;
pub mod auth;
pub mod members;
pub mod organizations;
pub mod pace;
pub mod webhook_credentials;

use aggregates::organization::Role;
use aggregates::user::UserError;
use eventlog::{CommandMeta, ExecuteError};
use poem::Request;
use poem_openapi::Enum;
use uuid::Uuid;

use crate::http::error::ApiError;
use crate::http::query::CONSISTENCY_WAIT;
use crate::state::AppState;

/// Every API of this module, for [`crate::http::Api`].
pub type AccountsApi = (
    auth::AuthApi,
    organizations::OrganizationsApi,
    members::MembersApi,
    api_keys::ApiKeysApi,
    webhook_credentials::WebhookCredentialsApi,
);

pub fn api() -> AccountsApi {
    (
        auth::AuthApi,
        organizations::OrganizationsApi,
        members::MembersApi,
        api_keys::ApiKeysApi,
        webhook_credentials::WebhookCredentialsApi,
    )
}

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum RoleName {
    Owner,
    Admin,
    Member,
    Viewer,
    /// Reads like a viewer and may read the audit trail, with personal data masked.
    Auditor,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Role {
        match r {
            RoleName::Owner => Role::Owner,
            RoleName::Admin => Role::Admin,
            RoleName::Member => Role::Member,
            RoleName::Viewer => Role::Viewer,
            RoleName::Auditor => Role::Auditor,
        }
    }
}

impl From<Role> for RoleName {
    fn from(r: Role) -> RoleName {
        match r {
            Role::Owner => RoleName::Owner,
            Role::Admin => RoleName::Admin,
            Role::Member => RoleName::Member,
            Role::Viewer => RoleName::Viewer,
            Role::Auditor => RoleName::Auditor,
        }
    }
}

/// Waits (bounded) until every read model reflects `position`. A timeout is logged, not
/// fatal: authentication re-checks the aggregates, so revocations already hold.
pub async fn settle(state: &AppState, position: i64) -> Result<(), ApiError> {
    if !state.wait_for_position(position, CONSISTENCY_WAIT).await? {
        tracing::warn!(position, "read models did not catch up in time");
    }
    Ok(())
}

/// Command metadata: actor, tenant and the client's `Idempotency-Key` (namespaced).
pub fn meta(req: &Request, actor: &str, tenant: Option<Uuid>, namespace: &str) -> CommandMeta {
    let mut meta = CommandMeta::new(actor.to_string());
    if let Some(tenant) = tenant {
        meta = meta.tenant(tenant);
    }
    match req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
        Some(key) if !key.is_empty() => meta.idempotency_key(format!("{namespace}:{actor}:{key}")),
        _ => meta,
    }
}

/// Maps the User / UserEmail aggregates' refusals to HTTP.
pub fn user_error(err: ExecuteError<UserError>) -> ApiError {
    let e = match err {
        ExecuteError::Store(e) => return e.into(),
        ExecuteError::Domain(e) => e,
    };
    let code = e.code();
    let message = e.to_string();
    match e {
        UserError::NotFound => ApiError::not_found(code, message),
        UserError::AlreadyRegistered | UserError::EmailTaken => ApiError::conflict(code, message),
        UserError::InvalidResetToken | UserError::InvalidVerificationToken => {
            ApiError::bad_request(code, message)
        }
        UserError::AlreadyVerified => ApiError::conflict(code, message),
        UserError::InvalidInput(_) => ApiError::unprocessable(code, message),
    }
}

/// A path parameter that must be an organization id: 404 when it is not a UUID.
pub fn organization_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| {
        ApiError::not_found("organization_not_found", "the organization does not exist")
    })
}

/// A trimmed, lowercased email address, or 422.
pub fn email_address(raw: &str) -> Result<String, ApiError> {
    let email = aggregates::user::normalize_email(raw);
    let valid = email.len() <= 320
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(email)
    } else {
        Err(ApiError::unprocessable(
            "invalid_email",
            "email must be an email address",
        ))
    }
}

/// Sender of account emails.
pub const EMAIL_FROM: &str = "CallFlex <no-reply@callflex.app>";
