//! Twilio call status callbacks → call status events.

use std::time::Duration;

use aggregates::call::{CallCommand, CallContext, CallError, CallStatus, Direction};
use aggregates::telephony::{StatusReport, TwilioCallCommand};
use chrono::Utc;
use eventlog::{CommandMeta, ExecuteError};
use sqlx::Row;
use uuid::Uuid;
use wire::TwilioStatus;

use super::deliveries::Delivery;
use super::Outcome;
use crate::app::AppError;
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

/// How long an unmatched callback waits for the read models to catch up with the log before
/// it is left for the VAPI handler to apply.
const CATCH_UP: Duration = Duration::from_secs(2);

/// The call a CallSid belongs to.
pub struct KnownCall {
    /// Our call stream id.
    pub id: String,
    pub organization_id: Uuid,
    pub vapi_call_id: String,
}

async fn find_call(state: &AppState, call_sid: &str) -> Result<Option<KnownCall>, AppError> {
    let row = sqlx::query(
        "SELECT id, organization_id, vapi_call_id FROM calls WHERE provider_call_id = $1",
    )
    .bind(call_sid.to_string())
    .fetch_optional(state.store.pool())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let organization: String = row.try_get(1)?;
    Ok(Some(KnownCall {
        id: row.try_get(0)?,
        organization_id: Uuid::parse_str(&organization).map_err(AppError::internal)?,
        vapi_call_id: row.try_get(2)?,
    }))
}

fn report_of(callback: &TwilioStatus, key: &str) -> StatusReport {
    StatusReport {
        key: key.to_string(),
        call_status: callback.call_status.clone().unwrap_or_default(),
        sequence_number: callback.sequence_number,
        from: callback.from.clone(),
        to: callback.to.clone(),
        direction: callback.direction.clone(),
        call_duration: callback.call_duration,
        at: callback.timestamp.unwrap_or_else(Utc::now),
    }
}

/// Applies one Twilio status to a call, under the idempotency key `twilio:{key}`: the Twilio
/// handler and the VAPI handler may both apply the same report, and it lands once.
pub async fn apply_report(
    state: &AppState,
    call_sid: &str,
    report: &StatusReport,
    call: &KnownCall,
    outcome: &mut Outcome,
) -> Result<(), AppError> {
    let organization_id = call.organization_id;
    let Some((status, ended_reason)) = status(&report.call_status) else {
        return Ok(());
    };
    let ctx = CallContext {
        organization_id,
        vapi_call_id: call.vapi_call_id.clone(),
        from_number: report.from.clone(),
        to_number: report.to.clone(),
        direction: Direction::Inbound,
        phone_number_id: None,
        assistant_id: None,
        provider_call_id: Some(call_sid.to_string()),
        started_at: None,
    };
    let cmd = CallCommand::UpdateStatus {
        ctx,
        status,
        ended_reason,
        at: report.at,
    };
    let meta = CommandMeta::new(format!("provider:twilio:{}", report.key))
        .tenant(organization_id)
        .idempotency_key(format!("twilio:{}", report.key));
    match state.calls.execute(&call.id, cmd, &meta).await {
        Ok(executed) => outcome.record(&executed.result),
        Err(ExecuteError::Domain(CallError::AlreadyEnded)) => {}
        Err(ExecuteError::Domain(err)) => {
            return Err(AppError::conflict(err.code(), err.to_string()))
        }
        Err(ExecuteError::Store(err)) => return Err(err.into()),
    }
    Ok(())
}

/// Keeps a callback that matched no call on its CallSid's stream, durably, so the VAPI handler
/// can apply it once a message names that CallSid.
async fn keep_unmatched(
    state: &AppState,
    callback: &TwilioStatus,
    report: StatusReport,
    outcome: &mut Outcome,
) -> Result<(), AppError> {
    let meta = CommandMeta::new(format!("provider:twilio:{}", report.key))
        .idempotency_key(format!("twilio-report:{}", report.key));
    let cmd = TwilioCallCommand::Report { report };
    match state
        .twilio_calls
        .execute(&callback.call_sid, cmd, &meta)
        .await
    {
        Ok(executed) => outcome.record(&executed.result),
        Err(ExecuteError::Domain(err)) => {
            return Err(AppError::bad_request(err.code(), err.to_string()))
        }
        Err(ExecuteError::Store(err)) => return Err(err.into()),
    }
    Ok(())
}

/// Handles `POST /api/webhooks/twilio/status`. `query` is the request's query string, which
/// Twilio includes in the signed URL.
///
/// A callback for a call we know updates its status. One for a CallSid no call has named
/// yet (Twilio can be faster than VAPI's first message, or than its projection) is kept on
/// the CallSid's stream; after the read models catch up it is looked up once more, and
/// otherwise the VAPI handler applies it when a message first names that CallSid.
pub async fn ingest(
    state: &AppState,
    signature: Option<&str>,
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Outcome, AppError> {
    let Some(token) = state.config.twilio_auth_token.as_ref() else {
        return Err(AppError::forbidden(
            "webhook_auth_not_configured",
            "TWILIO_AUTH_TOKEN is not configured; Twilio callbacks cannot be verified",
        ));
    };
    let params = wire::twilio::parse_form(body)
        .map_err(|err| AppError::bad_request("invalid_form", err.to_string()))?;
    let mut url = format!("{}/api/webhooks/twilio/status", state.config.public_url);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    wire::signature::twilio(token.expose(), &url, &params, signature).map_err(|err| {
        AppError::forbidden(
            "invalid_signature",
            format!("Twilio signature check failed: {err}"),
        )
    })?;
    accept(state, content_type, body).await
}

/// The callback after its signature check (a stored one replayed by `callflex redeliver`
/// enters here).
pub async fn accept(
    state: &AppState,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Outcome, AppError> {
    let callback = wire::parse_status_callback(body)
        .map_err(|err| AppError::bad_request("invalid_form", err.to_string()))?;
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
    let report = report_of(&callback, &key);
    let mut call = find_call(state, &callback.call_sid).await?;
    if call.is_none() && !report.call_status.is_empty() {
        keep_unmatched(state, &callback, report.clone(), &mut outcome).await?;
        // A VAPI message naming this CallSid may have committed before our report without
        // being projected yet: look again once the read models have caught up. One that
        // commits after our report finds the report itself.
        let head = state.store.head().await?;
        if state.wait_for_position(head, CATCH_UP).await? {
            call = find_call(state, &callback.call_sid).await?;
        }
        outcome.body = serde_json::json!({ "received": true, "matched": false, "pending": true });
    }
    let mut organization_id = None;
    if let Some(known) = call {
        apply_report(state, &callback.call_sid, &report, &known, &mut outcome).await?;
        outcome.body = serde_json::json!({ "received": true, "matched": true });
        organization_id = Some(known.organization_id.to_string());
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
        .await?;
    Ok(outcome)
}
