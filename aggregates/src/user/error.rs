//! User errors.

use thiserror::Error;

/// Rejections from the [`super::User`] and [`super::UserEmail`] aggregates.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UserError {
    #[error("user not found")]
    NotFound,
    #[error("user already registered")]
    AlreadyRegistered,
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("the reset token is invalid, used or expired")]
    InvalidResetToken,
    #[error("the verification token is invalid, used or expired")]
    InvalidVerificationToken,
    #[error("the email address is already verified")]
    AlreadyVerified,
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl UserError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        use UserError::*;
        match self {
            NotFound => "user_not_found",
            AlreadyRegistered => "user_already_registered",
            EmailTaken => "email_taken",
            InvalidResetToken => "invalid_reset_token",
            InvalidVerificationToken => "invalid_verification_token",
            AlreadyVerified => "already_verified",
            InvalidInput(_) => "invalid_input",
        }
    }
}
