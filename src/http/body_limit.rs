//! Body limits for the `/api/v1` routes, enforced before anything buffers a body: a declared
//! `Content-Length` over the limit is refused without reading, and a chunked body is read at
//! most to the limit. The auth routes (reachable without signing in) get the smallest limit.
//! Webhook routes keep their own, larger limit (see `payload`). On the way, control
//! characters are checked (see `control_chars`): in every route's path and query, and in
//! `/api/v1` JSON bodies.

use std::sync::Arc;

use poem::error::ReadBodyError;
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::http::allow::AllowedMethods;
use crate::http::control_chars;
use crate::http::error::ApiError;

/// The limits, from configuration.
#[derive(Clone, Copy, Debug)]
pub struct ApiBodyLimits {
    pub api: usize,
    pub auth: usize,
}

impl ApiBodyLimits {
    /// The limit for `path`, or `None` where this middleware does not apply (webhooks).
    fn for_path(&self, path: &str) -> Option<usize> {
        if path.starts_with("/api/v1/auth/") {
            Some(self.auth)
        } else if path.starts_with("/api/v1/") || path == "/api/v1" {
            Some(self.api)
        } else {
            None
        }
    }
}

fn too_large(limit: usize) -> Response {
    ApiError::too_large(limit).into_response()
}

/// Around-middleware: refuses bodies over the path's limit with 413 in our error shape.
pub async fn limit_body<E: Endpoint>(
    next: Arc<E>,
    mut req: Request,
    limits: ApiBodyLimits,
    document: Arc<AllowedMethods>,
) -> poem::Result<Response> {
    if let Err(err) = control_chars::check_uri(req.uri()) {
        return Ok(err.into_response());
    }
    let Some(limit) = limits.for_path(req.uri().path()) else {
        return Ok(next.get_response(req).await);
    };
    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Ok(too_large(limit));
    }
    let body = req.take_body();
    match body.into_bytes_limit(limit).await {
        Ok(bytes) => {
            // The value types the document declares (a JSON body that does not parse is
            // left to the handler's own 400).
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                let method = req.method().as_str().to_string();
                if let Err(err) = document.check_body(&method, req.uri().path(), &value) {
                    return Ok(err.into_response());
                }
            }
            match control_chars::check_json(&bytes) {
                Ok(Some(rewritten)) => req.set_body(rewritten),
                Ok(None) => req.set_body(bytes),
                Err(err) => return Ok(err.into_response()),
            }
        }
        Err(ReadBodyError::PayloadTooLarge) => return Ok(too_large(limit)),
        Err(err) => return Err(err.into()),
    }
    Ok(next.get_response(req).await)
}
