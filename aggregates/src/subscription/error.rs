//! Subscription errors.

use thiserror::Error;

/// Rejections from the [`super::Subscription`] aggregate. Most Stripe
/// oddities (redeliveries, stale updates) are no-ops, not errors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubscriptionError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl SubscriptionError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SubscriptionError::InvalidInput(_) => "invalid_input",
        }
    }
}
