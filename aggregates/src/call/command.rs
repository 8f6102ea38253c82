//! Call commands and the value types they carry.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::common::{Timestamp, UsdDollars};

/// Direction of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
    Web,
}

/// Lifecycle status as reported by VAPI. Declaration order is rank order:
/// a status never moves to a lower rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    Scheduled,
    Queued,
    Ringing,
    InProgress,
    Forwarding,
    Ended,
}

/// What each delivery knows about the call. Carried by every command that
/// can be the first one seen for a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallContext {
    pub organization_id: Uuid,
    pub vapi_call_id: String,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub direction: Direction,
    pub phone_number_id: Option<String>,
    pub assistant_id: Option<String>,
    /// Twilio CallSid.
    pub provider_call_id: Option<String>,
    pub started_at: Option<Timestamp>,
}

/// One transcript line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptSegment {
    /// Dedupe key (short hash); a key is recorded at most once per call.
    pub key: String,
    pub role: String,
    pub text: String,
    pub at: Timestamp,
    pub seconds_from_start: Option<f64>,
}

/// What a tool/function call asked the receptionist to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallAction {
    Transfer {
        destination: String,
        phone_number: Option<String>,
        reason: String,
        warm: bool,
        completed: bool,
    },
    DriverCallout {
        driver_name: String,
        reason: String,
        route_number: Option<String>,
        expected_return: Option<String>,
        additional_notes: Option<String>,
    },
    CallbackScheduled {
        phone_number: String,
        caller_name: Option<String>,
        reason: String,
        preferred_time: Option<String>,
        urgency: String,
    },
    MessageTaken {
        caller_name: Option<String>,
        caller_phone: Option<String>,
        message_for: Option<String>,
        message: String,
        urgent: bool,
    },
    Unknown {
        name: String,
    },
}

/// A handled tool call, with the reply we gave the assistant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionInvocation {
    pub tool_call_id: String,
    pub name: String,
    pub arguments: serde_json::Value,
    pub action: CallAction,
    pub reply: String,
    pub at: Timestamp,
    /// Notifications this function call asked for (the log is their durable outbox).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<Notification>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationChannel {
    Sms,
    Email,
}

/// A message to send on behalf of the organization, decided when the function ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub channel: NotificationChannel,
    pub recipients: Vec<String>,
    pub subject: Option<String>,
    pub body: String,
}

/// VAPI end-of-call report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndReport {
    pub ended_reason: Option<String>,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// When `None` the aggregate computes it from `ended_at - started_at`
    /// (falling back to the started_at recorded by `CallStarted`).
    pub duration_seconds: Option<f64>,
    pub cost: Option<UsdDollars>,
    pub cost_breakdown: serde_json::Value,
    pub transcript: Option<String>,
    pub messages: serde_json::Value,
    pub recording_url: Option<String>,
    pub stereo_recording_url: Option<String>,
    pub summary: Option<String>,
    pub structured_data: serde_json::Value,
    pub success_evaluation: Option<String>,
    pub at: Timestamp,
}

/// The post-call analysis: VAPI's own, or our LLM's. A field no source gave is `None`
/// (never invented).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CallAnalysis {
    pub summary: String,
    pub call_type: Option<String>,
    pub sentiment: Option<String>,
    pub caller_name: Option<String>,
    pub action_items: Vec<String>,
    /// low, normal or high.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgency: Option<String>,
    /// Where it came from: `vapi`, `llm`, or `vapi+llm` (VAPI's summary, our extraction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub at: Timestamp,
}

/// Commands accepted by the [`super::Call`] aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CallCommand {
    Start {
        ctx: CallContext,
        at: Timestamp,
    },
    UpdateStatus {
        ctx: CallContext,
        status: CallStatus,
        ended_reason: Option<String>,
        at: Timestamp,
    },
    AddTranscript {
        ctx: CallContext,
        segment: TranscriptSegment,
    },
    HandleFunctionCall {
        ctx: CallContext,
        invocation: FunctionInvocation,
    },
    /// The tool calls of one delivery (an assistant may call several functions at once),
    /// decided together so they are committed in one append.
    HandleFunctionCalls {
        ctx: CallContext,
        invocations: Vec<FunctionInvocation>,
    },
    Hang {
        ctx: CallContext,
        at: Timestamp,
    },
    End {
        ctx: CallContext,
        report: EndReport,
    },
    RecordRecording {
        ctx: CallContext,
        url: String,
        stereo_url: Option<String>,
        stored_path: Option<String>,
        at: Timestamp,
    },
    Analyze {
        ctx: CallContext,
        analysis: CallAnalysis,
    },
    Close {
        at: Timestamp,
    },
    /// Notifications decided after the call (the post-call summary): the call's stream is
    /// their durable outbox, as `FunctionCallHandled` is for those decided during the call.
    RequestNotifications {
        reason: String,
        notifications: Vec<Notification>,
        at: Timestamp,
    },
}
