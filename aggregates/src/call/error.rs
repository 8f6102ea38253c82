//! Call errors.

use thiserror::Error;

/// Rejections from the [`super::Call`] aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallError {
    #[error("call has already ended")]
    AlreadyEnded,
    #[error("call is closed")]
    Closed,
    #[error("call has not ended yet")]
    NotEnded,
    #[error("call belongs to another organization")]
    WrongOrganization,
}

impl CallError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CallError::AlreadyEnded => "call_already_ended",
            CallError::Closed => "call_closed",
            CallError::NotEnded => "call_not_ended",
            CallError::WrongOrganization => "call_wrong_organization",
        }
    }
}
