//! The one error type at the HTTP edge. Every error answers `{"error": {"code", "message",
//! "details"}}`; infrastructure errors are logged once here with their cause and shown to the
//! client only as `internal_error`.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (e.g. `invalid_signature`, `call_already_ended`).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Extra structured information (e.g. the offending parameter).
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// Malformed request (bad JSON, form or parameter).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or invalid credentials or signature.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Authenticated but not allowed (or a failed Twilio signature).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Unknown resource (or one of another organization).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Conflicts with the current state (concurrent change, closed call, ...).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// Body larger than the documented limit.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// Unsupported content type.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// Well-formed but semantically invalid.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Rate limited.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>),
    /// Something failed on our side; the request can be retried.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// An upstream provider (VAPI, Twilio) refused the request; nothing was recorded as done.
    #[oai(status = 502)]
    BadGateway(Json<ErrorBody>),
    /// A dependency is unavailable or a wait timed out; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

fn body(
    code: &str,
    message: impl Into<String>,
    details: Option<serde_json::Value>,
) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message: message.into(),
            details,
        },
    })
}

impl ApiError {
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest(body(code, message, None))
    }
    pub fn bad_parameter(name: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest(body(
            "invalid_parameter",
            message,
            Some(serde_json::json!({ "parameter": name })),
        ))
    }
    pub fn unauthorized(code: &str, message: impl Into<String>) -> Self {
        ApiError::Unauthorized(body(code, message, None))
    }
    pub fn forbidden(code: &str, message: impl Into<String>) -> Self {
        ApiError::Forbidden(body(code, message, None))
    }
    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        ApiError::NotFound(body(code, message, None))
    }
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        ApiError::Conflict(body(code, message, None))
    }
    pub fn too_large(limit: usize) -> Self {
        ApiError::PayloadTooLarge(body(
            "payload_too_large",
            format!("request body exceeds the {limit}-byte limit"),
            Some(serde_json::json!({ "limit_bytes": limit })),
        ))
    }
    pub fn unsupported_media_type(expected: &str, got: Option<&str>) -> Self {
        ApiError::UnsupportedMediaType(body(
            "unsupported_media_type",
            format!(
                "expected content type {expected}, got {}",
                got.unwrap_or("none")
            ),
            None,
        ))
    }
    pub fn unprocessable(code: &str, message: impl Into<String>) -> Self {
        ApiError::Unprocessable(body(code, message, None))
    }
    pub fn unavailable(code: &str, message: impl Into<String>) -> Self {
        ApiError::Unavailable(body(code, message, None))
    }
    /// 502 with structured details (e.g. the provider and its status).
    pub fn bad_gateway(
        code: &str,
        message: impl Into<String>,
        details: Option<serde_json::Value>,
    ) -> Self {
        ApiError::BadGateway(body(code, message, details))
    }
    /// An error of any status with structured details.
    pub fn with_details(self, details: serde_json::Value) -> Self {
        let mut this = self;
        match &mut this {
            ApiError::BadRequest(b)
            | ApiError::Unauthorized(b)
            | ApiError::Forbidden(b)
            | ApiError::NotFound(b)
            | ApiError::Conflict(b)
            | ApiError::PayloadTooLarge(b)
            | ApiError::UnsupportedMediaType(b)
            | ApiError::Unprocessable(b)
            | ApiError::TooManyRequests(b)
            | ApiError::Internal(b)
            | ApiError::BadGateway(b)
            | ApiError::Unavailable(b) => b.0.error.details = Some(details),
        }
        this
    }

    /// An infrastructure failure: logged here, once, with its cause chain; the client only
    /// learns that it may retry.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "request failed");
        ApiError::Internal(body(
            "internal_error",
            "an internal error occurred; the request can be retried",
            None,
        ))
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::Conflict(_) => 409,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Unprocessable(_) => 422,
            ApiError::TooManyRequests(_) => 429,
            ApiError::Internal(_) => 500,
            ApiError::BadGateway(_) => 502,
            ApiError::Unavailable(_) => 503,
        }
    }

    pub fn detail(&self) -> &ErrorDetail {
        match self {
            ApiError::BadRequest(b)
            | ApiError::Unauthorized(b)
            | ApiError::Forbidden(b)
            | ApiError::NotFound(b)
            | ApiError::Conflict(b)
            | ApiError::PayloadTooLarge(b)
            | ApiError::UnsupportedMediaType(b)
            | ApiError::Unprocessable(b)
            | ApiError::TooManyRequests(b)
            | ApiError::Internal(b)
            | ApiError::BadGateway(b)
            | ApiError::Unavailable(b) => &b.0.error,
        }
    }
}

impl From<eventlog::StoreError> for ApiError {
    fn from(err: eventlog::StoreError) -> Self {
        match err {
            // Commands to one stream take turns inside a process and retry conflicts with
            // other processes for seconds; one still conflicting is a transient overload, not
            // a refusal (a provider must never read it as "don't retry").
            eventlog::StoreError::Conflict { .. } => ApiError::unavailable(
                "write_contention",
                "the resource is being changed by another process; retry the request",
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::webhooks::deliveries::NotRecorded> for ApiError {
    fn from(err: crate::webhooks::deliveries::NotRecorded) -> Self {
        ApiError::unavailable("delivery_not_recorded", err.to_string())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        ApiError::internal(err)
    }
}

/// Converts errors poem itself raises (unknown route, bad path or query parameter, body
/// rejected by an extractor) into our error shape.
pub fn from_poem(err: &poem::Error) -> (u16, serde_json::Value) {
    let status = err.status().as_u16();
    let code = match status {
        400 => "bad_request",
        401 => "unauthorized",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        _ if status >= 500 => "internal_error",
        _ => "request_error",
    };
    let message = if status == 401 {
        "missing or invalid credentials: send Authorization: Bearer <session token or API key>"
            .to_string()
    } else if status >= 500 {
        tracing::error!(error = %err, "unhandled server error");
        "an internal error occurred".to_string()
    } else {
        err.to_string()
    };
    (
        status,
        serde_json::json!({ "error": { "code": code, "message": message, "details": null } }),
    )
}

/// Every use case's error, in HTTP's words (the one map from [`ErrorKind`] to a status).
impl From<crate::app::AppError> for ApiError {
    fn from(err: crate::app::AppError) -> Self {
        use crate::app::ErrorKind;
        let detail = |err: crate::app::AppError| body(&err.code, err.message, err.details);
        match err.kind {
            ErrorKind::BadRequest => ApiError::BadRequest(detail(err)),
            ErrorKind::Unauthenticated => ApiError::Unauthorized(detail(err)),
            ErrorKind::Forbidden => ApiError::Forbidden(detail(err)),
            ErrorKind::NotFound => ApiError::NotFound(detail(err)),
            ErrorKind::Conflict => ApiError::Conflict(detail(err)),
            ErrorKind::Invalid => ApiError::Unprocessable(detail(err)),
            ErrorKind::Unavailable => ApiError::Unavailable(detail(err)),
            ErrorKind::Upstream => ApiError::BadGateway(detail(err)),
            ErrorKind::Internal => ApiError::internal(format!("{}: {}", err.code, err.message)),
        }
    }
}
