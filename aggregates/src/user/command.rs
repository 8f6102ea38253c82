//! User commands. Secrets never arrive here: passwords and tokens are hashed by the caller
//! (argon2id for passwords, SHA-256 for random tokens), and every time comes in the command.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::common::Timestamp;

/// Commands accepted by the [`super::User`] aggregate (one stream per user id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserCommand {
    /// Creates the account. `email` is normalized (trimmed, lowercased) by the aggregate.
    Register {
        user_id: Uuid,
        email: String,
        password_hash: String,
        name: String,
    },
    /// Opens a session after the caller verified the password.
    SignIn {
        session_id: String,
        token_hash: String,
        expires_at: Timestamp,
    },
    /// Records a failed sign-in (wrong password) for the audit trail.
    RecordSignInFailure { at: Timestamp },
    /// Ends one session (a no-op when it is already gone).
    SignOut { session_id: String },
    /// Issues a single-use password reset token.
    RequestPasswordReset {
        reset_id: String,
        token_hash: String,
        expires_at: Timestamp,
    },
    /// Issues a single-use email verification token (a no-op refusal once verified).
    RequestEmailVerification {
        verification_id: String,
        token_hash: String,
        expires_at: Timestamp,
    },
    /// Proves the address with a verification token; every outstanding one is used up.
    VerifyEmail { token_hash: String, at: Timestamp },
    /// Sets a new password with a reset token; every session and reset token is revoked.
    ResetPassword {
        token_hash: String,
        password_hash: String,
        at: Timestamp,
    },
}
