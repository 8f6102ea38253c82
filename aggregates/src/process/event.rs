//! Process events: an instance's progress, step by step.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::plan::StepPlan;
use crate::common::Timestamp;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProcessEvent {
    ProcessStarted {
        kind: String,
        subject: String,
        organization_id: Option<Uuid>,
        input: serde_json::Value,
        steps: Vec<StepPlan>,
        at: Timestamp,
    },
    /// Recorded before a send no provider key can deduplicate; without an outcome after it,
    /// the attempt is in doubt.
    StepAttempted {
        step: String,
        attempt: u32,
        at: Timestamp,
    },
    StepSucceeded {
        step: String,
        attempt: u32,
        output: serde_json::Value,
        at: Timestamp,
    },
    /// `retry_at` is when it runs again; `None` means the step gives up (next event).
    StepFailed {
        step: String,
        attempt: u32,
        error: String,
        retry_at: Option<Timestamp>,
        /// What the attempt saw (e.g. a receiver's status code, latency and first bytes).
        #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
        detail: serde_json::Value,
        at: Timestamp,
    },
    StepGaveUp {
        step: String,
        attempts: u32,
        error: String,
        at: Timestamp,
    },
    StepSkipped {
        step: String,
        reason: String,
        at: Timestamp,
    },
    /// The step chose to wait (e.g. an organization's quiet hours); no attempt is spent.
    StepPostponed {
        step: String,
        until: Timestamp,
        reason: String,
        at: Timestamp,
    },
    ProcessCompleted {
        failed_steps: Vec<String>,
        at: Timestamp,
    },
    /// A step that gave up (or was skipped) runs again from its first attempt.
    StepReopened {
        step: String,
        reason: String,
        at: Timestamp,
    },
}

impl ProcessEvent {
    pub fn name(&self) -> &'static str {
        match self {
            ProcessEvent::ProcessStarted { .. } => "ProcessStarted",
            ProcessEvent::StepAttempted { .. } => "StepAttempted",
            ProcessEvent::StepSucceeded { .. } => "StepSucceeded",
            ProcessEvent::StepFailed { .. } => "StepFailed",
            ProcessEvent::StepGaveUp { .. } => "StepGaveUp",
            ProcessEvent::StepSkipped { .. } => "StepSkipped",
            ProcessEvent::StepPostponed { .. } => "StepPostponed",
            ProcessEvent::ProcessCompleted { .. } => "ProcessCompleted",
            ProcessEvent::StepReopened { .. } => "StepReopened",
        }
    }

    pub fn at(&self) -> Timestamp {
        match self {
            ProcessEvent::ProcessStarted { at, .. }
            | ProcessEvent::StepAttempted { at, .. }
            | ProcessEvent::StepSucceeded { at, .. }
            | ProcessEvent::StepFailed { at, .. }
            | ProcessEvent::StepGaveUp { at, .. }
            | ProcessEvent::StepSkipped { at, .. }
            | ProcessEvent::StepPostponed { at, .. }
            | ProcessEvent::ProcessCompleted { at, .. }
            | ProcessEvent::StepReopened { at, .. } => *at,
        }
    }
}

impl DomainEvent for ProcessEvent {
    fn event_type(&self) -> String {
        self.name().to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
