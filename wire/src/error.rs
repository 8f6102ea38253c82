//! Errors for payload normalization.
//!
//! Signature failures have their own type ([`crate::SignatureError`]) because the HTTP layer maps
//! them to 401, while a [`WireError`] means "authentic but unusable body" (400 / log and ack).

use thiserror::Error;

/// Why a provider body could not be normalized.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The body is not valid JSON (empty, truncated, wrong encoding, too deeply nested...).
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The body is JSON but not the expected shape (not an object, missing `type`, missing id...).
    #[error("invalid shape: {0}")]
    InvalidShape(String),
    /// The body is not a usable `application/x-www-form-urlencoded` document (e.g. raw non-UTF-8).
    #[error("invalid form body: {0}")]
    InvalidForm(String),
}
