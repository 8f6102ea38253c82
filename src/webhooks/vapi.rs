//! VAPI server messages → call events, and the synchronous answers VAPI waits for
//! (tool calls, legacy function calls, assistant requests).

use std::collections::BTreeMap;

use aggregates::call::{
    functions, Call, CallCommand, CallContext, CallError, CallEvent, CallStatus, Direction,
    EndReport, FunctionInvocation, TranscriptSegment,
};
use aggregates::organization::Organization;
use chrono::{DateTime, Utc};
use eventlog::{CommandMeta, ExecuteError, Executed};
use uuid::Uuid;
use wire::{CallInfo, VapiKind, VapiMessage};

use super::deliveries::{self, Delivery};
use super::Outcome;
use crate::app::AppError;
use crate::state::AppState;

/// Our id for a VAPI call: derived from the organization and VAPI's id, so one tenant can
/// never address another tenant's call stream.
pub fn call_id(organization_id: Uuid, vapi_call_id: &str) -> String {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("call:{organization_id}:{vapi_call_id}").as_bytes(),
    )
    .to_string()
}

/// How stale the organization (webhook credentials, transfer numbers) may be on this path when
/// it was changed by ANOTHER process; this process's own changes are seen at once.
const ORGANIZATION_STALENESS: std::time::Duration = std::time::Duration::from_secs(2);

/// Request headers VAPI authenticates with.
#[derive(Debug, Default, Clone)]
pub struct AuthHeaders {
    pub vapi_secret: Option<String>,
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub vapi_signature: Option<String>,
}

/// The secrets a delivery may be authenticated with: the organization's current one, the one
/// before its last rotation while the overlap lasts, and the service-wide fallback.
fn candidate_secrets(state: &AppState, org: &Organization) -> Result<Vec<String>, AppError> {
    let open = |sealed: &str| state.secrets.open(sealed).map_err(AppError::internal);
    let mut secrets = Vec::new();
    if let Some(auth) = &org.webhook_auth {
        for sealed in [auth.shared_secret.as_deref(), auth.hmac_secret.as_deref()]
            .into_iter()
            .flatten()
        {
            secrets.push(open(sealed)?);
        }
        if let (Some(previous), Some(until)) = (&auth.previous_secret, auth.previous_valid_until) {
            if Utc::now() < until {
                secrets.push(open(previous)?);
            }
        }
    }
    if let Some(fallback) = &state.config.vapi_webhook_secret {
        secrets.push(fallback.expose().to_string());
    }
    secrets.dedup();
    Ok(secrets)
}

/// Checks whichever credential the request carries (all three of VAPI's forms) against each
/// candidate secret. Every comparison is constant-time.
fn authenticate(
    state: &AppState,
    org: &Organization,
    headers: &AuthHeaders,
    body: &[u8],
) -> Result<(), AppError> {
    let secrets = candidate_secrets(state, org)?;
    if secrets.is_empty() {
        return Err(AppError::unauthorized(
            "webhook_auth_not_configured",
            "this organization has no VAPI webhook credential configured",
        ));
    }
    let now = Utc::now().timestamp();
    let tolerance = state.config.signature_tolerance_secs;
    let check = |secret: &str| {
        if let Some(sig) = &headers.signature {
            wire::signature::vapi_hmac(
                secret,
                headers.timestamp.as_deref(),
                Some(sig),
                body,
                now,
                tolerance,
            )
        } else if let Some(sig) = &headers.vapi_signature {
            wire::signature::vapi_body_hmac(secret, Some(sig), body)
        } else if let Some(given) = &headers.vapi_secret {
            wire::signature::vapi_shared_secret(secret, Some(given))
        } else {
            Err(wire::SignatureError::Missing)
        }
    };
    let mut last = Err(wire::SignatureError::Missing);
    for secret in &secrets {
        last = check(secret);
        if last.is_ok() {
            return Ok(());
        }
    }
    last.map_err(|err| {
        AppError::unauthorized(
            "invalid_signature",
            format!("VAPI authentication failed: {err}"),
        )
    })
}

/// Handles one delivery to `POST /api/webhooks/vapi/{organization_id}`.
pub async fn ingest(
    state: &AppState,
    organization_id: &str,
    headers: &AuthHeaders,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Outcome, AppError> {
    let org_id = Uuid::parse_str(organization_id).map_err(|_| {
        AppError::bad_parameter("organization_id", "organization_id must be a UUID")
    })?;
    let (org, _) = state
        .organizations
        .load_within(&org_id.to_string(), ORGANIZATION_STALENESS)
        .await?;
    if !org.is_live() {
        return Err(AppError::not_found(
            "organization_not_found",
            "no such organization",
        ));
    }
    authenticate(state, &org, headers, body)?;
    accept(state, org_id, &org, content_type, body).await
}

/// The delivery after its authentication: parsed, handled and kept in the ledger. A stored
/// delivery replayed by `callflex redeliver` enters here (it was authenticated when first
/// received; its signature's timestamp is long past).
pub async fn accept(
    state: &AppState,
    org_id: Uuid,
    org: &Organization,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Outcome, AppError> {
    let key = deliveries::sha256_hex(&[org_id.as_bytes(), body]);
    let message = wire::parse_vapi(body)
        .map_err(|err| AppError::bad_request("invalid_payload", err.to_string()))?;
    // No ledger lookup on this path (a round trip before every tool-call answer): an exact
    // redelivery runs the same commands under the same idempotency keys, which return the
    // first run's results, so the answer is the same (tests check it). This process's own
    // deliveries not yet in the ledger are answered from memory all the same.
    if let Some(previous) = state.ledger.find_unwritten("vapi", &key) {
        return Ok(previous);
    }
    let delivery = Delivery {
        provider: "vapi",
        key: &key,
        organization_id: Some(org_id.to_string()),
        message_type: Some(message.raw_type.clone()),
        content_type,
        body,
    };
    state
        .ledger
        .keep(delivery, handle(state, org_id, org, &message, &key))
        .await
}

fn direction(call: &CallInfo) -> Direction {
    match call.direction.as_deref() {
        Some("outbound") => Direction::Outbound,
        Some("web") => Direction::Web,
        _ => Direction::Inbound,
    }
}

fn context(org_id: Uuid, message: &VapiMessage) -> Result<CallContext, AppError> {
    let call = &message.call;
    let vapi_call_id = call
        .id
        .clone()
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| {
            AppError::bad_request(
                "missing_call_id",
                format!("a {} message must carry call.id", message.raw_type),
            )
        })?;
    Ok(CallContext {
        organization_id: org_id,
        vapi_call_id,
        from_number: call.customer_number.clone(),
        to_number: call.our_number.clone(),
        direction: direction(call),
        phone_number_id: call.phone_number_id.clone(),
        assistant_id: call.assistant_id.clone(),
        provider_call_id: call.provider_call_id.clone(),
        started_at: call.started_at,
    })
}

fn call_status(status: &str) -> Option<CallStatus> {
    Some(match status {
        "scheduled" => CallStatus::Scheduled,
        "queued" => CallStatus::Queued,
        "ringing" => CallStatus::Ringing,
        "in-progress" | "in_progress" | "inProgress" => CallStatus::InProgress,
        "forwarding" => CallStatus::Forwarding,
        "ended" => CallStatus::Ended,
        _ => return None,
    })
}

/// Runs one call command with an idempotency key derived from the delivery and its index.
async fn run(
    state: &AppState,
    org_id: Uuid,
    ctx: &CallContext,
    command: CallCommand,
    key: &str,
    index: usize,
    outcome: &mut Outcome,
) -> Result<Option<Executed<Call>>, AppError> {
    let meta = CommandMeta::new(format!("provider:vapi:{key}"))
        .tenant(org_id)
        .idempotency_key(format!("vapi:{key}:{index}"))
        .correlation(Uuid::new_v5(&Uuid::NAMESPACE_OID, key.as_bytes()))
        .extra("delivery", key);
    let id = call_id(org_id, &ctx.vapi_call_id);
    // A call this process has not seen is most likely new (this is its first delivery): the
    // command is decided on an empty call without reading the stream (a snapshot lookup and a
    // stream read). Should the call exist after all (another process, a restart), the append
    // conflicts and the repository decides the command again on the stream read fresh.
    state.calls.presume_new(&id);
    match state.calls.execute(&id, command, &meta).await {
        Ok(executed) => {
            outcome.record(&executed.result);
            // Without a Twilio token no callback is accepted, so none can be waiting.
            let twilio = state.config.twilio_auth_token.is_some();
            if let Some(call_sid) = newly_learned_call_sid(&executed.events).filter(|_| twilio) {
                apply_waiting_twilio_reports(state, org_id, ctx, &id, call_sid, outcome).await?;
            }
            Ok(Some(executed))
        }
        // A second end report for an ended call is a redelivery in another shape: accepted.
        Err(ExecuteError::Domain(CallError::AlreadyEnded)) => Ok(None),
        Err(ExecuteError::Domain(err)) => Err(AppError::conflict(err.code(), err.to_string())),
        Err(ExecuteError::Store(err)) => Err(err.into()),
    }
}

/// The CallSid a command's events tied to the call for the first time, if any.
fn newly_learned_call_sid(events: &[CallEvent]) -> Option<&str> {
    events.iter().find_map(|event| match event {
        CallEvent::CallStarted {
            provider_call_id, ..
        }
        | CallEvent::CallDetailsLearned {
            provider_call_id, ..
        } => provider_call_id.as_deref(),
        _ => None,
    })
}

/// Twilio callbacks that arrived before any call named this CallSid wait on the CallSid's
/// stream; now that this call has named it, they are applied to it (under the same keys the
/// Twilio handler would use, so a report both sides apply lands once).
async fn apply_waiting_twilio_reports(
    state: &AppState,
    org_id: Uuid,
    ctx: &CallContext,
    call_id: &str,
    call_sid: &str,
    outcome: &mut Outcome,
) -> Result<(), AppError> {
    let (waiting, _) = state.twilio_calls.load(call_sid).await?;
    let call = super::twilio::KnownCall {
        id: call_id.to_string(),
        organization_id: org_id,
        vapi_call_id: ctx.vapi_call_id.clone(),
    };
    for report in &waiting.reports {
        super::twilio::apply_report(state, call_sid, report, &call, outcome).await?;
    }
    Ok(())
}

async fn handle(
    state: &AppState,
    org_id: Uuid,
    org: &Organization,
    message: &VapiMessage,
    key: &str,
) -> Result<Outcome, AppError> {
    let at = message.timestamp.unwrap_or_else(Utc::now);
    let mut outcome = Outcome::ok(serde_json::json!({ "received": true }));
    let call_related = !matches!(
        message.kind,
        VapiKind::AssistantRequest
            | VapiKind::SpeechUpdate { .. }
            | VapiKind::ConversationUpdate { .. }
            | VapiKind::Unknown
    );
    if call_related
        && message
            .call
            .id
            .as_deref()
            .is_none_or(|id| id.trim().is_empty())
    {
        // Docs examples and some drifted payloads omit the call: keep the raw delivery for
        // audit, but there is no call stream to write to.
        outcome.body = serde_json::json!({ "received": true, "ignored": "message has no call.id" });
        return Ok(outcome);
    }
    match &message.kind {
        VapiKind::AssistantRequest => {
            let reply = assistant_for(org, message.call.our_number.as_deref());
            if message.call.id.is_some() {
                let ctx = context(org_id, message)?;
                let cmd = CallCommand::Start {
                    ctx: ctx.clone(),
                    at,
                };
                run(state, org_id, &ctx, cmd, key, 0, &mut outcome).await?;
            }
            outcome.body = reply;
            return Ok(outcome);
        }
        VapiKind::CallStart => {
            let ctx = context(org_id, message)?;
            let cmd = CallCommand::Start {
                ctx: ctx.clone(),
                at,
            };
            run(state, org_id, &ctx, cmd, key, 0, &mut outcome).await?;
        }
        VapiKind::StatusUpdate {
            status,
            ended_reason,
        } => {
            let ctx = context(org_id, message)?;
            let cmd = match call_status(status) {
                Some(status) => CallCommand::UpdateStatus {
                    ctx: ctx.clone(),
                    status,
                    ended_reason: ended_reason.clone(),
                    at,
                },
                None => CallCommand::Start {
                    ctx: ctx.clone(),
                    at,
                },
            };
            run(state, org_id, &ctx, cmd, key, 0, &mut outcome).await?;
        }
        VapiKind::Transcript {
            role,
            transcript_type,
            text,
        } => {
            let ctx = context(org_id, message)?;
            // Partial transcripts are superseded by the final one: nothing to keep.
            if transcript_type != "partial" && !text.trim().is_empty() {
                let segment = TranscriptSegment {
                    key: wire::vapi::transcript_key(role, text, message.timestamp),
                    role: role.clone(),
                    text: text.clone(),
                    at,
                    seconds_from_start: None,
                };
                let cmd = CallCommand::AddTranscript {
                    ctx: ctx.clone(),
                    segment,
                };
                run(state, org_id, &ctx, cmd, key, 0, &mut outcome).await?;
            }
        }
        VapiKind::Hang => {
            let ctx = context(org_id, message)?;
            let cmd = CallCommand::Hang {
                ctx: ctx.clone(),
                at,
            };
            run(state, org_id, &ctx, cmd, key, 0, &mut outcome).await?;
        }
        VapiKind::EndOfCallReport(end) => {
            let ctx = context(org_id, message)?;
            let report = EndReport {
                ended_reason: end.ended_reason.clone(),
                started_at: end.started_at,
                ended_at: end.ended_at,
                duration_seconds: end.duration_seconds,
                cost: end.cost,
                cost_breakdown: end.costs.clone(),
                transcript: end.transcript.clone(),
                messages: end.messages.clone(),
                recording_url: end.recording_url.clone(),
                stereo_recording_url: end.stereo_recording_url.clone(),
                summary: end.summary.clone(),
                structured_data: end.structured_data.clone(),
                success_evaluation: end.success_evaluation.clone(),
                at,
            };
            let cmd = CallCommand::End {
                ctx: ctx.clone(),
                report,
            };
            run(state, org_id, &ctx, cmd, key, 0, &mut outcome).await?;
        }
        VapiKind::ToolCalls(calls) => {
            let ctx = context(org_id, message)?;
            let replies = invoke(state, org_id, org, &ctx, calls, at, key, &mut outcome).await?;
            let results: Vec<_> = calls
                .iter()
                .zip(replies)
                .map(|(call, reply)| (call.id.clone(), call.name.clone(), reply))
                .collect();
            outcome.body = wire::vapi::tool_calls_reply(&results);
            return Ok(outcome);
        }
        VapiKind::TransferDestinationRequest => {
            // VAPI asks where to transfer when the model's transfer named no destination. The
            // answer is decided as the seed's transferCall to the first configured line, so
            // it is recorded as the same transfer action (or the same "take a message").
            let ctx = context(org_id, message)?;
            let numbers = &org.settings.transfer_numbers;
            let line = |n: &Option<String>| n.clone().filter(|n| !n.trim().is_empty());
            let (destination, number) = match (line(&numbers.dispatch), line(&numbers.manager)) {
                (None, Some(manager)) => ("manager", Some(manager)),
                (dispatch, _) => ("dispatch", dispatch),
            };
            let mut arguments = serde_json::Map::new();
            arguments.insert("destination".into(), destination.into());
            arguments.insert("reason".into(), "transfer-destination-request".into());
            let call = wire::ToolCall {
                id: Some(format!("tdr-{key}")),
                name: "transferCall".into(),
                arguments,
            };
            let calls = std::slice::from_ref(&call);
            let replies = invoke(state, org_id, org, &ctx, calls, at, key, &mut outcome).await?;
            let reply = replies.into_iter().next().unwrap_or_default();
            outcome.body = match number {
                Some(number) => wire::vapi::transfer_destination_reply(&number, &reply),
                None => wire::vapi::assistant_request_error(&reply),
            };
            return Ok(outcome);
        }
        VapiKind::FunctionCall(call) => {
            let ctx = context(org_id, message)?;
            // Legacy function calls carry no id; this one is stable per delivery.
            let call = wire::ToolCall {
                id: Some(call.id.clone().unwrap_or_else(|| format!("fc-{key}"))),
                ..call.clone()
            };
            let calls = std::slice::from_ref(&call);
            let replies = invoke(state, org_id, org, &ctx, calls, at, key, &mut outcome).await?;
            let reply = replies.into_iter().next().unwrap_or_default();
            outcome.body = wire::vapi::function_call_reply(&reply);
            return Ok(outcome);
        }
        VapiKind::SpeechUpdate { .. } | VapiKind::ConversationUpdate { .. } | VapiKind::Unknown => {
            // Recorded as a raw delivery only; nothing in them changes a call's history.
        }
    }
    Ok(outcome.with_position())
}

/// Runs the assistant's functions of one delivery and returns, for each, what the assistant
/// should say. They are decided together and committed in ONE append: the answer waits for
/// one durable commit however many functions the model called at once. A redelivered tool
/// call returns the reply recorded the first time.
#[allow(clippy::too_many_arguments)]
async fn invoke(
    state: &AppState,
    org_id: Uuid,
    org: &Organization,
    ctx: &CallContext,
    calls: &[wire::ToolCall],
    at: DateTime<Utc>,
    key: &str,
    outcome: &mut Outcome,
) -> Result<Vec<String>, AppError> {
    if calls.is_empty() {
        return Ok(Vec::new());
    }
    let invocations: Vec<FunctionInvocation> = calls
        .iter()
        .enumerate()
        .map(|(index, call)| {
            let decided = functions::decide(&call.name, &call.arguments, &org.settings);
            FunctionInvocation {
                // An id-less tool call gets one that is stable per delivery.
                tool_call_id: call.id.clone().unwrap_or_else(|| format!("{key}-{index}")),
                name: call.name.clone(),
                arguments: serde_json::Value::Object(call.arguments.clone()),
                action: decided.action,
                reply: decided.reply,
                at,
                notifications: decided.notifications,
            }
        })
        .collect();
    let cmd = CallCommand::HandleFunctionCalls {
        ctx: ctx.clone(),
        invocations: invocations.clone(),
    };
    let executed = run(state, org_id, ctx, cmd, key, 0, outcome).await?;
    Ok(invocations
        .into_iter()
        .map(|invocation| {
            executed
                .as_ref()
                .and_then(|e| e.state.reply_for(&invocation.tool_call_id))
                .map(str::to_string)
                .unwrap_or(invocation.reply)
        })
        .collect())
}

/// The answer to an `assistant-request`: the assistant linked to the called number.
fn assistant_for(org: &Organization, number: Option<&str>) -> serde_json::Value {
    let linked: BTreeMap<_, _> = org
        .phone_numbers
        .values()
        .filter(|p| !p.released)
        .map(|p| (p.number.as_str(), p.assistant_id.as_deref()))
        .collect();
    let assistant = number
        .and_then(|n| linked.get(n).copied().flatten())
        .or_else(|| {
            // A single live assistant answers every number when none is linked explicitly.
            let live: Vec<_> = org.assistants.iter().filter(|(_, a)| !a.deleted).collect();
            (live.len() == 1).then(|| live[0].0.as_str())
        })
        .and_then(|id| org.assistants.get(id))
        .filter(|a| !a.deleted)
        .and_then(|a| a.vapi_assistant_id.clone());
    match assistant {
        Some(id) => wire::vapi::assistant_request_reply_assistant_id(&id),
        None => wire::vapi::assistant_request_error(
            "Sorry, this line is not set up yet. Please call back later.",
        ),
    }
}
