//! [`AppError`]: the one error every use case returns, whoever called it (an HTTP handler, a
//! webhook delivery, a process). Its [`ErrorKind`] says what went wrong in words the caller
//! can act on; `src/http` turns it into a status code, a process into retry-or-give-up.

use aggregates::call::CallError;
use aggregates::organization::OrganizationError;
use aggregates::process::ProcessError;
use aggregates::subscription::SubscriptionError;
use aggregates::user::UserError;
use eventlog::{ExecuteError, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is malformed (a bad token, an unknown state): 400.
    BadRequest,
    /// Who is asking could not be established: 401.
    Unauthenticated,
    /// Established, but not allowed: 403.
    Forbidden,
    NotFound,
    /// Refused because of the resource's current state: 409.
    Conflict,
    /// Well-formed input that breaks a rule: 422.
    Invalid,
    /// Try again later (contention, a provider down): 503 with `Retry-After`.
    Unavailable,
    /// A provider refused what we sent: 502.
    Upstream,
    Internal,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AppError {
    pub kind: ErrorKind,
    pub code: String,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

impl AppError {
    pub fn new(kind: ErrorKind, code: &str, message: impl Into<String>) -> Self {
        AppError {
            kind,
            code: code.to_string(),
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }

    pub fn invalid(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, code, message)
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }

    /// A malformed parameter, named in the details.
    pub fn bad_parameter(name: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, "invalid_parameter", message)
            .with_details(serde_json::json!({ "parameter": name }))
    }

    pub fn unauthorized(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, code, message)
    }

    pub fn forbidden(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, code, message)
    }

    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    pub fn unprocessable(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, code, message)
    }

    pub fn unavailable(code: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, code, message)
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, "internal_error", err.to_string())
    }

    /// Whether the same request may succeed later unchanged (what a process retries).
    pub fn retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Unavailable | ErrorKind::Internal)
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict { .. } => AppError::new(
                ErrorKind::Unavailable,
                "write_contention",
                "the resource is being changed by another process; retry the request",
            ),
            other => AppError::internal(other),
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        AppError::internal(err)
    }
}

impl From<crate::webhooks::deliveries::NotRecorded> for AppError {
    fn from(err: crate::webhooks::deliveries::NotRecorded) -> Self {
        AppError::unavailable("delivery_not_recorded", err.to_string())
    }
}

impl From<crate::providers::ProviderError> for AppError {
    fn from(err: crate::providers::ProviderError) -> Self {
        use crate::providers::ProviderError;
        match err {
            ProviderError::Rejected {
                provider,
                status,
                body,
            } => AppError::new(
                ErrorKind::Upstream,
                "provider_rejected",
                format!("{provider} refused the request (status {status})"),
            )
            .with_details(serde_json::json!({
                "provider": provider, "status": status, "body": body,
            })),
            ProviderError::Unavailable {
                provider, reason, ..
            } => AppError::unavailable(
                "provider_unavailable",
                format!("{provider} is unavailable; retry later"),
            )
            .with_details(serde_json::json!({ "provider": provider, "reason": reason })),
            ProviderError::Record(e) => AppError::internal(e),
        }
    }
}

impl DomainError for aggregates::schedule::ScheduleError {
    fn code(&self) -> &'static str {
        aggregates::schedule::ScheduleError::code(self)
    }

    fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }
}

/// A domain refusal with a stable code and the kind of failure it is: one table per
/// aggregate, so every caller maps a refusal the same way.
pub trait DomainError: std::error::Error {
    fn code(&self) -> &'static str;
    fn kind(&self) -> ErrorKind;
    fn details(&self) -> Option<serde_json::Value> {
        None
    }
}

impl<E: DomainError> From<ExecuteError<E>> for AppError {
    fn from(err: ExecuteError<E>) -> Self {
        match err {
            ExecuteError::Store(e) => e.into(),
            ExecuteError::Domain(e) => AppError {
                kind: e.kind(),
                code: e.code().to_string(),
                message: e.to_string(),
                details: e.details(),
            },
        }
    }
}

impl DomainError for OrganizationError {
    fn code(&self) -> &'static str {
        OrganizationError::code(self)
    }

    fn kind(&self) -> ErrorKind {
        use OrganizationError::*;
        match self {
            NotFound
            | MemberNotFound
            | ApiKeyNotFound
            | AssistantNotFound
            | PhoneNumberNotFound
            | IntegrationNotFound
            | WebhookEndpointNotFound
            | ContactNotFound => ErrorKind::NotFound,
            Forbidden => ErrorKind::Forbidden,
            InvalidAuthorizationState | AuthorizationStateExpired => ErrorKind::BadRequest,
            InvalidInput(_) | UnknownEventType(_) => ErrorKind::Invalid,
            _ => ErrorKind::Conflict,
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            OrganizationError::ContactExists(id) => Some(serde_json::json!({ "contact_id": id })),
            OrganizationError::UnknownEventType(name) => Some(serde_json::json!({
                "field": "event_types",
                "unknown": name,
                "known": aggregates::outbound::EVENT_TYPES.iter().map(|(t, _)| t).collect::<Vec<_>>(),
            })),
            _ => None,
        }
    }
}

impl DomainError for UserError {
    fn code(&self) -> &'static str {
        UserError::code(self)
    }

    fn kind(&self) -> ErrorKind {
        match self {
            UserError::NotFound => ErrorKind::NotFound,
            UserError::AlreadyRegistered | UserError::EmailTaken | UserError::AlreadyVerified => {
                ErrorKind::Conflict
            }
            UserError::InvalidResetToken | UserError::InvalidVerificationToken => {
                ErrorKind::BadRequest
            }
            UserError::InvalidInput(_) => ErrorKind::Invalid,
        }
    }
}

impl DomainError for CallError {
    fn code(&self) -> &'static str {
        CallError::code(self)
    }

    fn kind(&self) -> ErrorKind {
        ErrorKind::Conflict
    }
}

impl DomainError for SubscriptionError {
    fn code(&self) -> &'static str {
        SubscriptionError::code(self)
    }

    fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }
}

impl DomainError for ProcessError {
    fn code(&self) -> &'static str {
        ProcessError::code(self)
    }

    fn kind(&self) -> ErrorKind {
        match self {
            ProcessError::InvalidInput(_) => ErrorKind::Invalid,
            ProcessError::UnknownStep(_) => ErrorKind::NotFound,
            ProcessError::NotStarted
            | ProcessError::NotRunnable(_)
            | ProcessError::NotReopenable(_) => ErrorKind::Conflict,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_per_aggregate_maps_every_not_found_alike() {
        for err in [
            OrganizationError::MemberNotFound,
            OrganizationError::ContactNotFound,
            OrganizationError::PhoneNumberNotFound,
        ] {
            let app: AppError = ExecuteError::Domain(err).into();
            assert_eq!(app.kind, ErrorKind::NotFound, "{}", app.code);
        }
        let exists: AppError =
            ExecuteError::Domain(OrganizationError::ContactExists("c1".into())).into();
        assert_eq!(exists.kind, ErrorKind::Conflict);
        assert_eq!(exists.details.unwrap()["contact_id"], "c1");
        let contention: AppError = StoreError::Conflict {
            aggregate_type: "call".into(),
            aggregate_id: "x".into(),
            expected: 1,
        }
        .into();
        assert!(contention.retryable());
    }
}
