//! Twilio call status callbacks → call status events.

use aggregates::call::{CallCommand, CallContext, CallError, CallStatus, Direction};
use chrono::Utc;
use eventlog::{CommandMeta, ExecuteError};
use sqlx::Row;
use uuid::Uuid;

use super::deliveries::Delivery;
use super::Outcome;
use crate::http::error::ApiError;
use crate::state::AppState;

fn status(call_status: &str) -> Option<(CallStatus, Option<String>)> {
    Some(match call_status {
        "queued" | "initiated" => (CallStatus::Queued, None),
        "ringing" => (CallStatus::Ringing, None),
        "in-progress" | "answered" => (CallStatus::InProgress, None),
        "completed" | "busy" | "failed" | "no-answer" | "canceled" => {
            (CallStatus::Ended, Some(format!("twilio-{call_status}")))
        }
        _ => return None,
    })
}

/// Handles `POST /api/webhooks/twilio/status`. `query` is the request's query string, which
/// Twilio includes in the signed URL.
pub async fn ingest(
    state: &AppState,
    signature: Option<&str>,
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Outcome, ApiError> {
    let Some(token) = state.config.twilio_auth_token.as_ref() else {
        return Err(ApiError::forbidden(
            "webhook_auth_not_configured",
            "TWILIO_AUTH_TOKEN is not configured; Twilio callbacks cannot be verified",
        ));
    };
    let params = wire::twilio::parse_form(body)
        .map_err(|err| ApiError::bad_request("invalid_form", err.to_string()))?;
    let mut url = format!("{}/api/webhooks/twilio/status", state.config.public_url);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    wire::signature::twilio(token.expose(), &url, &params, signature).map_err(|err| {
        ApiError::forbidden(
            "invalid_signature",
            format!("Twilio signature check failed: {err}"),
        )
    })?;
    let callback = wire::parse_status_callback(body)
        .map_err(|err| ApiError::bad_request("invalid_form", err.to_string()))?;
    let key = format!(
        "{}:{}:{}",
        callback.call_sid,
        callback.call_status.as_deref().unwrap_or(""),
        callback.sequence_number.unwrap_or_default()
    );
    if let Some(previous) = state.ledger.find("twilio", &key).await? {
        return Ok(previous);
    }
    let mut outcome = Outcome::ok(serde_json::json!({ "received": true, "matched": false }));
    let row = sqlx::query(
        "SELECT id, organization_id, vapi_call_id, direction FROM calls WHERE provider_call_id = $1",
    )
    .bind(callback.call_sid.clone())
    .fetch_optional(state.store.pool())
    .await?;
    let mut organization_id = None;
    if let (Some(row), Some((call_status, ended_reason))) =
        (row, callback.call_status.as_deref().and_then(status))
    {
        let id: String = row.try_get(0)?;
        let org: String = row.try_get(1)?;
        let vapi_call_id: String = row.try_get(2)?;
        let org_id = Uuid::parse_str(&org).map_err(ApiError::internal)?;
        let ctx = CallContext {
            organization_id: org_id,
            vapi_call_id,
            from_number: callback.from.clone(),
            to_number: callback.to.clone(),
            direction: Direction::Inbound,
            phone_number_id: None,
            assistant_id: None,
            provider_call_id: Some(callback.call_sid.clone()),
            started_at: None,
        };
        let cmd = CallCommand::UpdateStatus {
            ctx,
            status: call_status,
            ended_reason,
            at: callback.timestamp.unwrap_or_else(Utc::now),
        };
        let meta = CommandMeta::new(format!("provider:twilio:{key}"))
            .tenant(org_id)
            .idempotency_key(format!("twilio:{key}"));
        match state.calls.execute(&id, cmd, &meta).await {
            Ok(executed) => outcome.record(&executed.result),
            Err(ExecuteError::Domain(CallError::AlreadyEnded)) => {}
            Err(ExecuteError::Domain(err)) => {
                return Err(ApiError::conflict(err.code(), err.to_string()))
            }
            Err(ExecuteError::Store(err)) => return Err(err.into()),
        }
        outcome.body = serde_json::json!({ "received": true, "matched": true });
        organization_id = Some(org);
    }
    let outcome = outcome.with_position();
    state
        .ledger
        .record(
            Delivery {
                provider: "twilio",
                key: &key,
                organization_id,
                message_type: callback.call_status.clone(),
                content_type,
                body,
            },
            &outcome,
        )
        .await;
    Ok(outcome)
}
