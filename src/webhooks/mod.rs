//! Webhook ingestion: raw bytes → verify → dedupe on the provider's id → parse → commands.
//! One module per provider; [`deliveries`] keeps every accepted delivery for audit and answers
//! an exact redelivery with the first answer.

pub mod deliveries;
pub mod integrations;
pub mod redeliver;
pub mod stored;
pub mod stripe;
pub mod twilio;
pub mod vapi;

use eventlog::AppendResult;

/// What a delivery produced: the answer to send and where its events landed in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: u16,
    pub body: serde_json::Value,
    pub first_position: i64,
    pub last_position: i64,
    pub event_count: i64,
}

impl Outcome {
    pub fn ok(body: serde_json::Value) -> Self {
        Self {
            status: 200,
            body,
            first_position: 0,
            last_position: 0,
            event_count: 0,
        }
    }

    /// Folds one command's append into the outcome.
    pub fn record(&mut self, result: &AppendResult) {
        if result.last_position > 0 {
            if self.first_position == 0 {
                self.first_position = result.first_position;
            }
            self.last_position = self.last_position.max(result.last_position);
        }
        if !result.duplicate {
            self.event_count += result.event_count;
        }
    }

    /// Adds `position` (the last log position this delivery wrote) to an object body.
    pub fn with_position(mut self) -> Self {
        if let Some(obj) = self.body.as_object_mut() {
            obj.insert("position".into(), self.last_position.into());
        }
        self
    }
}
