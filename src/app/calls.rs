//! Call use cases run after (or during) a call by the processes: record the analysis, ask
//! for notifications, close the call. Each is idempotent under the key its caller passes.

use std::time::Duration;

use aggregates::call::{Call, CallAnalysis, CallCommand, CallContext, Direction, Notification};
use aggregates::common::Timestamp;
use eventlog::{AppendResult, StoredEvent};

use super::{command_meta, AppError, Caller};
use crate::state::AppState;

/// The call's state, and its stored events (the end report, the transcript), for a caller
/// of its organization; 404 for a call of another organization or none.
pub async fn load(
    state: &AppState,
    caller: &Caller,
    call_id: &str,
) -> Result<(Call, Vec<StoredEvent>), AppError> {
    // One read: the state is folded from the same events (a cached load would read the
    // stream's tail first, a second round trip).
    let events = state.store.read_stream("call", call_id, 0).await?;
    let call = state.calls.fold(&events)?;
    ensure_owned(&call, caller)?;
    Ok((call, events))
}

/// The call's state, when it belongs to the caller's organization (404 otherwise): the
/// cached state and the stream's tail, for callers that need no stored event.
pub async fn owned(state: &AppState, caller: &Caller, call_id: &str) -> Result<Call, AppError> {
    let (call, _) = state.calls.load(call_id).await?;
    ensure_owned(&call, caller)?;
    Ok(call)
}

/// How old a cached call may be when a step reads only facts that are settled once they are
/// there (our number, the recording an ended call left).
const SETTLED_STALENESS: Duration = Duration::from_secs(60);

/// The call for a reader that needs only facts that do not change once `settled` holds: the
/// cached state when it is recent and shows them, else the stream's tail read fresh (a
/// stream read less for most process steps; this process's own writes are always cached).
pub async fn owned_settled(
    state: &AppState,
    caller: &Caller,
    call_id: &str,
    settled: impl Fn(&Call) -> bool,
) -> Result<Call, AppError> {
    owned_within(state, caller, call_id, SETTLED_STALENESS, settled).await
}

/// The cached call when it is at most `max_age` old, the caller's, and `enough` for the
/// reader; else the stream's tail read fresh (404 for a call not the caller's).
async fn owned_within(
    state: &AppState,
    caller: &Caller,
    call_id: &str,
    max_age: Duration,
    enough: impl Fn(&Call) -> bool,
) -> Result<Call, AppError> {
    let (call, _) = state.calls.load_within(call_id, max_age).await?;
    if ensure_owned(&call, caller).is_ok() && enough(&call) {
        return Ok(call);
    }
    owned(state, caller, call_id).await
}

/// 404 for a call that has not begun or belongs to another organization.
fn ensure_owned(call: &Call, caller: &Caller) -> Result<(), AppError> {
    if !call.started || call.organization_id != Some(caller.organization_id) {
        return Err(AppError::not_found("call_not_found", "no such call"));
    }
    Ok(())
}

/// The context a command on an existing call carries (what the call already knows).
fn context(call: &Call, caller: &Caller) -> CallContext {
    CallContext {
        organization_id: caller.organization_id,
        vapi_call_id: call.vapi_call_id.clone(),
        from_number: call.from_number.clone(),
        to_number: call.to_number.clone(),
        direction: Direction::Inbound,
        phone_number_id: call.phone_number_id.clone(),
        assistant_id: call.assistant_id.clone(),
        provider_call_id: call.provider_call_id.clone(),
        started_at: call.started_at,
    }
}

/// How stale a cached call may be when a command is decided on it (another process's
/// writes; this process's own are always in the cache).
const COMMAND_STALENESS: Duration = Duration::from_secs(2);

/// The call a command is built on: the cached state when it is fresh enough (the repository
/// decides the command and re-decides it on a conflict, and a context built from an older
/// state only knows less, so it teaches the call nothing wrong). A call the cache does not
/// show as the caller's is read fresh before the answer is believed.
async fn for_command(state: &AppState, caller: &Caller, call_id: &str) -> Result<Call, AppError> {
    owned_within(state, caller, call_id, COMMAND_STALENESS, |_| true).await
}

async fn execute(
    state: &AppState,
    caller: &Caller,
    call_id: &str,
    key: &str,
    command: impl FnOnce(&Call) -> CallCommand,
) -> Result<AppendResult, AppError> {
    let call = for_command(state, caller, call_id).await?;
    let meta = command_meta(caller, "calls", Some(key));
    Ok(state
        .calls
        .execute(call_id, command(&call), &meta)
        .await?
        .result)
}

/// Records the call's summary and extraction.
pub async fn record_analysis(
    state: &AppState,
    caller: &Caller,
    call_id: &str,
    key: &str,
    analysis: CallAnalysis,
) -> Result<AppendResult, AppError> {
    execute(state, caller, call_id, key, |call| CallCommand::Analyze {
        ctx: context(call, caller),
        analysis,
    })
    .await
}

/// Puts notifications decided after the call into the call's stream (their outbox).
pub async fn request_notifications(
    state: &AppState,
    caller: &Caller,
    call_id: &str,
    key: &str,
    reason: &str,
    notifications: Vec<Notification>,
    at: Timestamp,
) -> Result<AppendResult, AppError> {
    execute(state, caller, call_id, key, |_| {
        CallCommand::RequestNotifications {
            reason: reason.to_string(),
            notifications,
            at,
        }
    })
    .await
}

/// Notes where the call's recording was copied (`stored_path`: its storage key).
pub async fn record_recording(
    state: &AppState,
    caller: &Caller,
    call_id: &str,
    key: &str,
    url: String,
    stored_path: String,
    at: Timestamp,
) -> Result<AppendResult, AppError> {
    execute(state, caller, call_id, key, |call| {
        CallCommand::RecordRecording {
            ctx: context(call, caller),
            url,
            stereo_url: None,
            stored_path: Some(stored_path),
            at,
        }
    })
    .await
}

/// Marks the call processed (`CallProcessed`): nothing more happens to it.
pub async fn close(
    state: &AppState,
    caller: &Caller,
    call_id: &str,
    key: &str,
    at: Timestamp,
) -> Result<AppendResult, AppError> {
    execute(state, caller, call_id, key, |_| CallCommand::Close { at }).await
}
