//! `GET /recordings/{call}?expires=&kid=&signature=`: a call's recording from our storage,
//! authorized by the short-lived signature `GET /api/v1/calls/{id}/recording` handed out (so
//! an audio player can fetch it without the bearer token). Outside `/api/v1`: it answers audio.

use std::sync::Arc;

use poem::web::{Data, Path, Query};
use poem::{handler, Response};
use serde::Deserialize;

use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct Signed {
    expires: i64,
    kid: String,
    signature: String,
}

fn error(status: u16, code: &str, message: &str) -> Response {
    Response::builder()
        .status(poem::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("application/json")
        .body(serde_json::json!({"error": {"code": code, "message": message}}).to_string())
}

#[handler]
pub async fn recording(
    Path(call_id): Path<String>,
    Query(signed): Query<Signed>,
    Data(state): Data<&Arc<AppState>>,
) -> Response {
    let now = chrono::Utc::now().timestamp();
    if !crate::recordings::verify(
        &state.secrets,
        &call_id,
        signed.expires,
        &signed.kid,
        &signed.signature,
        now,
    ) {
        return error(
            403,
            "invalid_signature",
            "the link is invalid or expired; ask the API for a new one",
        );
    }
    let key = match state.calls.load(&call_id).await {
        Ok((call, _)) => call.recording_stored_path,
        Err(err) => {
            tracing::error!(error = %err, "loading a call for its recording failed");
            return error(503, "unavailable", "try again shortly");
        }
    };
    let Some(key) = key else {
        return error(
            404,
            "recording_not_found",
            "no stored recording for this call",
        );
    };
    match state.recordings.get(&key).await {
        Ok(Some(bytes)) => Response::builder()
            .content_type(crate::recordings::content_type(&key))
            .header("cache-control", "private, max-age=300")
            .body(bytes.to_vec()),
        Ok(None) => error(
            404,
            "recording_not_found",
            "no stored recording for this call",
        ),
        Err(err) => {
            tracing::error!(error = %err, %key, "reading a stored recording failed");
            error(
                503,
                "unavailable",
                "the recording storage did not answer; try again",
            )
        }
    }
}
