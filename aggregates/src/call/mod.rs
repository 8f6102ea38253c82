//! The Call aggregate: one per phone call, keyed by the VAPI call id.
//!
//! Webhook deliveries arrive out of order or not at all, so every command
//! that carries a [`CallContext`] first emits `CallStarted` when the call has
//! not been seen yet, and otherwise `CallDetailsLearned` when the context
//! fills in fields that were unknown so far.

mod command;
mod error;
mod event;
pub mod functions;
pub mod notify;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use command::{
    CallAction, CallAnalysis, CallCommand, CallContext, CallStatus, Direction, EndReport,
    FunctionInvocation, Notification, NotificationChannel, TranscriptSegment,
};
pub use error::CallError;
pub use event::CallEvent;

use crate::common::{emit, write_all, Timestamp};

/// Call state. Deliberately small (it is snapshotted): no transcript text.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Call {
    pub started: bool,
    pub organization_id: Option<Uuid>,
    pub vapi_call_id: String,
    pub status: Option<CallStatus>,
    pub ended: bool,
    pub closed: bool,
    pub hung_up: bool,
    /// Dedupe keys of transcript segments already recorded.
    pub seen_segments: BTreeSet<String>,
    /// tool_call_id → reply given, for idempotent function calls.
    pub replies: BTreeMap<String, String>,
    pub recording_url: Option<String>,
    pub recording_stored_path: Option<String>,
    pub started_at: Option<Timestamp>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub provider_call_id: Option<String>,
    pub phone_number_id: Option<String>,
    pub assistant_id: Option<String>,
    pub segment_count: u64,
}

impl Call {
    /// The reply already given for a tool call, if it was handled before.
    pub fn reply_for(&self, tool_call_id: &str) -> Option<&str> {
        self.replies.get(tool_call_id).map(String::as_str)
    }

    /// Pure decision: the events `command` would produce against this state.
    /// Does not modify `self`.
    pub fn decide(&self, command: CallCommand) -> Result<Vec<CallEvent>, CallError> {
        let mut scratch = self.clone();
        let mut out = Vec::new();
        scratch.decide_into(command, &mut out)?;
        Ok(out)
    }

    fn decide_into(
        &mut self,
        command: CallCommand,
        out: &mut Vec<CallEvent>,
    ) -> Result<(), CallError> {
        match command {
            CallCommand::Start { ctx, at } => {
                self.check_org(&ctx)?;
                let started_at = ctx.started_at.or(Some(at));
                self.start_or_learn(&ctx, started_at, out);
            }
            CallCommand::UpdateStatus {
                ctx,
                status,
                ended_reason,
                at,
            } => {
                self.check_org(&ctx)?;
                self.start_or_learn(&ctx, ctx.started_at, out);
                if self.status.is_none_or(|current| status > current) {
                    emit(
                        self,
                        out,
                        CallEvent::CallStatusChanged {
                            status,
                            ended_reason,
                            at,
                        },
                    );
                }
            }
            CallCommand::AddTranscript { ctx, segment } => {
                // A segment delivered after the call was processed is still recorded: VAPI
                // does not order its deliveries nor retry a refusal, so refusing loses it.
                self.check_org(&ctx)?;
                self.start_or_learn(&ctx, ctx.started_at, out);
                if !self.seen_segments.contains(&segment.key) {
                    emit(self, out, CallEvent::TranscriptSegmentAdded { segment });
                }
            }
            CallCommand::HandleFunctionCall { ctx, invocation } => {
                self.handle_function_calls(&ctx, vec![invocation], out)?;
            }
            CallCommand::HandleFunctionCalls { ctx, invocations } => {
                self.handle_function_calls(&ctx, invocations, out)?;
            }
            CallCommand::Hang { ctx, at } => {
                self.check_org(&ctx)?;
                self.start_or_learn(&ctx, ctx.started_at, out);
                if !self.hung_up {
                    emit(self, out, CallEvent::CallHungUp { at });
                }
            }
            CallCommand::End { ctx, mut report } => {
                self.check_org(&ctx)?;
                if self.ended {
                    return Err(CallError::AlreadyEnded);
                }
                self.start_or_learn(&ctx, ctx.started_at.or(report.started_at), out);
                report.duration_seconds = report
                    .duration_seconds
                    .filter(|d| plausible_duration(*d))
                    .or_else(|| {
                        duration_seconds(report.started_at.or(self.started_at), report.ended_at)
                    });
                let recording =
                    report
                        .recording_url
                        .clone()
                        .map(|url| CallEvent::RecordingAvailable {
                            url,
                            stereo_url: report.stereo_recording_url.clone(),
                            stored_path: None,
                            at: report.at,
                        });
                emit(self, out, CallEvent::CallEnded { report });
                if let Some(event) = recording {
                    if self.is_new_recording(&event) {
                        emit(self, out, event);
                    }
                }
            }
            CallCommand::RecordRecording {
                ctx,
                url,
                stereo_url,
                stored_path,
                at,
            } => {
                self.check_org(&ctx)?;
                self.start_or_learn(&ctx, ctx.started_at, out);
                let event = CallEvent::RecordingAvailable {
                    url,
                    stereo_url,
                    stored_path,
                    at,
                };
                if self.is_new_recording(&event) {
                    emit(self, out, event);
                }
            }
            CallCommand::Analyze { ctx, analysis } => {
                self.check_org(&ctx)?;
                self.check_open()?;
                if !self.ended {
                    return Err(CallError::NotEnded);
                }
                self.start_or_learn(&ctx, ctx.started_at, out);
                emit(self, out, CallEvent::CallAnalyzed { analysis });
            }
            CallCommand::Close { at } => {
                if self.closed {
                    return Ok(());
                }
                if !self.ended {
                    return Err(CallError::NotEnded);
                }
                emit(self, out, CallEvent::CallProcessed { at });
            }
            CallCommand::RequestNotifications {
                reason,
                notifications,
                at,
            } => {
                if notifications.iter().all(|n| n.recipients.is_empty()) {
                    return Ok(());
                }
                emit(
                    self,
                    out,
                    CallEvent::NotificationsRequested {
                        reason,
                        notifications,
                        at,
                    },
                );
            }
        }
        Ok(())
    }

    /// Records each invocation not seen before. A redelivered tool call is answered from the
    /// stored reply, even after close; a new one needs an open call.
    fn handle_function_calls(
        &mut self,
        ctx: &CallContext,
        invocations: Vec<FunctionInvocation>,
        out: &mut Vec<CallEvent>,
    ) -> Result<(), CallError> {
        self.check_org(ctx)?;
        for invocation in invocations {
            // Also drops a repeated id within the same list: `emit` applies as it goes.
            if self.replies.contains_key(&invocation.tool_call_id) {
                continue;
            }
            // Like a late transcript segment, a late tool call is recorded after close.
            self.start_or_learn(ctx, ctx.started_at, out);
            emit(self, out, CallEvent::FunctionCallHandled { invocation });
        }
        Ok(())
    }

    fn check_org(&self, ctx: &CallContext) -> Result<(), CallError> {
        match self.organization_id {
            Some(org) if org != ctx.organization_id => Err(CallError::WrongOrganization),
            _ => Ok(()),
        }
    }

    fn check_open(&self) -> Result<(), CallError> {
        if self.closed {
            Err(CallError::Closed)
        } else {
            Ok(())
        }
    }

    /// A recording is new unless the same url is already recorded and the
    /// command adds no new stored path.
    fn is_new_recording(&self, event: &CallEvent) -> bool {
        match event {
            CallEvent::RecordingAvailable {
                url, stored_path, ..
            } => {
                self.recording_url.as_deref() != Some(url.as_str())
                    || (stored_path.is_some() && *stored_path != self.recording_stored_path)
            }
            _ => false,
        }
    }

    /// Emits `CallStarted` for an unseen call, else `CallDetailsLearned` if
    /// the context knows something new.
    fn start_or_learn(
        &mut self,
        ctx: &CallContext,
        started_at: Option<Timestamp>,
        out: &mut Vec<CallEvent>,
    ) {
        if !self.started {
            let event = CallEvent::CallStarted {
                organization_id: ctx.organization_id,
                vapi_call_id: ctx.vapi_call_id.clone(),
                from_number: ctx.from_number.clone(),
                to_number: ctx.to_number.clone(),
                direction: ctx.direction,
                phone_number_id: ctx.phone_number_id.clone(),
                assistant_id: ctx.assistant_id.clone(),
                provider_call_id: ctx.provider_call_id.clone(),
                started_at,
            };
            emit(self, out, event);
            return;
        }
        let learn = |known: &Option<String>, new: &Option<String>| match known {
            None => new.clone(),
            Some(_) => None,
        };
        let from_number = learn(&self.from_number, &ctx.from_number);
        let to_number = learn(&self.to_number, &ctx.to_number);
        let provider_call_id = learn(&self.provider_call_id, &ctx.provider_call_id);
        let phone_number_id = learn(&self.phone_number_id, &ctx.phone_number_id);
        let assistant_id = learn(&self.assistant_id, &ctx.assistant_id);
        let anything_new = from_number.is_some()
            || to_number.is_some()
            || provider_call_id.is_some()
            || phone_number_id.is_some()
            || assistant_id.is_some();
        if anything_new {
            emit(
                self,
                out,
                CallEvent::CallDetailsLearned {
                    from_number,
                    to_number,
                    provider_call_id,
                    phone_number_id,
                    assistant_id,
                },
            );
        }
    }
}

/// The longest call believed (VAPI caps calls at 12 hours): a longer duration is a sender's
/// error, and it would swamp every usage total it was added to.
pub const MAX_CALL_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

fn plausible_duration(seconds: f64) -> bool {
    (0.0..=MAX_CALL_SECONDS).contains(&seconds)
}

/// Seconds between two instants, when both are known, ordered and plausibly one call apart.
fn duration_seconds(start: Option<Timestamp>, end: Option<Timestamp>) -> Option<f64> {
    let millis = (end? - start?).num_milliseconds();
    Some(millis as f64 / 1000.0).filter(|d| plausible_duration(*d))
}

fn fill(slot: &mut Option<String>, value: Option<String>) {
    if slot.is_none() {
        *slot = value;
    }
}

impl Aggregate for Call {
    const TYPE: &'static str = "call";
    type Command = CallCommand;
    type Event = CallEvent;
    type Error = CallError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = self.decide(command)?;
        write_all(self, sink, events).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CallEvent::CallStarted {
                organization_id,
                vapi_call_id,
                from_number,
                to_number,
                direction: _,
                phone_number_id,
                assistant_id,
                provider_call_id,
                started_at,
            } => {
                self.started = true;
                self.organization_id = Some(organization_id);
                self.vapi_call_id = vapi_call_id;
                self.from_number = from_number;
                self.to_number = to_number;
                self.phone_number_id = phone_number_id;
                self.assistant_id = assistant_id;
                self.provider_call_id = provider_call_id;
                self.started_at = started_at;
            }
            CallEvent::CallDetailsLearned {
                from_number,
                to_number,
                provider_call_id,
                phone_number_id,
                assistant_id,
            } => {
                fill(&mut self.from_number, from_number);
                fill(&mut self.to_number, to_number);
                fill(&mut self.provider_call_id, provider_call_id);
                fill(&mut self.phone_number_id, phone_number_id);
                fill(&mut self.assistant_id, assistant_id);
            }
            CallEvent::CallStatusChanged { status, .. } => {
                self.status = Some(status);
            }
            CallEvent::TranscriptSegmentAdded { segment } => {
                self.seen_segments.insert(segment.key);
                self.segment_count += 1;
            }
            CallEvent::FunctionCallHandled { invocation } => {
                self.replies
                    .insert(invocation.tool_call_id, invocation.reply);
            }
            CallEvent::CallHungUp { .. } => {
                self.hung_up = true;
            }
            CallEvent::CallEnded { report } => {
                self.ended = true;
                self.status = Some(CallStatus::Ended);
                if self.started_at.is_none() {
                    self.started_at = report.started_at;
                }
            }
            CallEvent::RecordingAvailable {
                url, stored_path, ..
            } => {
                if self.recording_url.as_deref() != Some(url.as_str()) {
                    self.recording_stored_path = None;
                }
                self.recording_url = Some(url);
                if stored_path.is_some() {
                    self.recording_stored_path = stored_path;
                }
            }
            CallEvent::CallAnalyzed { .. } => {}
            CallEvent::CallProcessed { .. } => {
                self.closed = true;
            }
            CallEvent::NotificationsRequested { .. } => {}
        }
    }
}
