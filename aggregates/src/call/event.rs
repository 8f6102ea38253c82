//! Call events.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::command::{
    CallAnalysis, CallStatus, Direction, EndReport, FunctionInvocation, Notification,
    TranscriptSegment,
};
use crate::common::Timestamp;

/// Events of the [`super::Call`] aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CallEvent {
    CallStarted {
        organization_id: Uuid,
        vapi_call_id: String,
        from_number: Option<String>,
        to_number: Option<String>,
        direction: Direction,
        phone_number_id: Option<String>,
        assistant_id: Option<String>,
        provider_call_id: Option<String>,
        started_at: Option<Timestamp>,
    },
    /// Context fields learned after the start; only newly known values are
    /// `Some`.
    CallDetailsLearned {
        from_number: Option<String>,
        to_number: Option<String>,
        provider_call_id: Option<String>,
        phone_number_id: Option<String>,
        assistant_id: Option<String>,
    },
    CallStatusChanged {
        status: CallStatus,
        ended_reason: Option<String>,
        at: Timestamp,
    },
    TranscriptSegmentAdded {
        segment: TranscriptSegment,
    },
    FunctionCallHandled {
        invocation: FunctionInvocation,
    },
    CallHungUp {
        at: Timestamp,
    },
    CallEnded {
        report: EndReport,
    },
    RecordingAvailable {
        url: String,
        stereo_url: Option<String>,
        stored_path: Option<String>,
        at: Timestamp,
    },
    CallAnalyzed {
        analysis: CallAnalysis,
    },
    CallProcessed {
        at: Timestamp,
    },
    NotificationsRequested {
        reason: String,
        notifications: Vec<Notification>,
        at: Timestamp,
    },
}

impl CallEvent {
    /// Stable event type name (equal to the variant name).
    pub fn name(&self) -> &'static str {
        match self {
            CallEvent::CallStarted { .. } => "CallStarted",
            CallEvent::CallDetailsLearned { .. } => "CallDetailsLearned",
            CallEvent::CallStatusChanged { .. } => "CallStatusChanged",
            CallEvent::TranscriptSegmentAdded { .. } => "TranscriptSegmentAdded",
            CallEvent::FunctionCallHandled { .. } => "FunctionCallHandled",
            CallEvent::CallHungUp { .. } => "CallHungUp",
            CallEvent::CallEnded { .. } => "CallEnded",
            CallEvent::RecordingAvailable { .. } => "RecordingAvailable",
            CallEvent::CallAnalyzed { .. } => "CallAnalyzed",
            CallEvent::CallProcessed { .. } => "CallProcessed",
            CallEvent::NotificationsRequested { .. } => "NotificationsRequested",
        }
    }
}

impl DomainEvent for CallEvent {
    fn event_type(&self) -> String {
        self.name().to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
