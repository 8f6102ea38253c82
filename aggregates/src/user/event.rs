//! User events.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::common::Timestamp;

/// Events of the [`super::User`] aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    UserRegistered {
        user_id: Uuid,
        /// Lowercased.
        email: String,
        password_hash: String,
        name: String,
        /// True since email verification exists: the address must be verified before the
        /// account signs in. Absent (false) in older events, whose accounts count as verified.
        #[serde(default)]
        verification_required: bool,
    },
    EmailVerificationRequested {
        verification_id: String,
        token_hash: String,
        expires_at: Timestamp,
    },
    EmailVerified {
        verification_id: String,
    },
    SignedIn {
        session_id: String,
        token_hash: String,
        expires_at: Timestamp,
    },
    SignInFailed {
        at: Timestamp,
    },
    SignedOut {
        session_id: String,
    },
    PasswordResetRequested {
        reset_id: String,
        token_hash: String,
        expires_at: Timestamp,
    },
    /// The password changed; every session and outstanding reset token is revoked.
    PasswordReset {
        reset_id: String,
        password_hash: String,
    },
}

impl UserEvent {
    /// Stable event type name (equal to the variant name).
    pub fn name(&self) -> &'static str {
        use UserEvent::*;
        match self {
            UserRegistered { .. } => "UserRegistered",
            EmailVerificationRequested { .. } => "EmailVerificationRequested",
            EmailVerified { .. } => "EmailVerified",
            SignedIn { .. } => "SignedIn",
            SignInFailed { .. } => "SignInFailed",
            SignedOut { .. } => "SignedOut",
            PasswordResetRequested { .. } => "PasswordResetRequested",
            PasswordReset { .. } => "PasswordReset",
        }
    }
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        self.name().to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
