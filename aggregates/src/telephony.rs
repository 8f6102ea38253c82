//! [`TwilioCall`]: one stream per Twilio CallSid, holding the status callbacks Twilio sent
//! for a call we could not yet tie to a VAPI call.
//!
//! Twilio's callback can arrive before the first VAPI message naming that CallSid has been
//! projected. Its status is kept here as an event instead of being dropped. The VAPI
//! handler reads this stream when a call first learns its CallSid, and applies what is
//! waiting. Both sides apply a report under the same idempotency key, so when they race a
//! report is applied once.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::common::{write_all, Timestamp};

/// One status callback, as much of it as the call's history needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// `{CallSid}:{CallStatus}:{SequenceNumber}`: the callback's dedupe key.
    pub key: String,
    /// Twilio's `CallStatus` (queued, initiated, ringing, in-progress, completed, busy, ...).
    pub call_status: String,
    pub sequence_number: Option<i64>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Twilio's `Direction` (inbound, outbound-api, outbound-dial).
    pub direction: Option<String>,
    /// `CallDuration` in seconds, on a final status.
    pub call_duration: Option<i64>,
    pub at: Timestamp,
}

/// The callbacks kept for one CallSid.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TwilioCall {
    pub reports: Vec<StatusReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TwilioCallCommand {
    /// Keep a callback that matched no known call (a repeated key is a no-op).
    Report { report: StatusReport },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TwilioCallEvent {
    StatusReported { report: StatusReport },
}

impl DomainEvent for TwilioCallEvent {
    fn event_type(&self) -> String {
        match self {
            TwilioCallEvent::StatusReported { .. } => "StatusReported",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TwilioCallError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl TwilioCallError {
    pub fn code(&self) -> &'static str {
        match self {
            TwilioCallError::InvalidInput(_) => "invalid_input",
        }
    }
}

impl TwilioCall {
    pub fn decide(
        &self,
        command: TwilioCallCommand,
    ) -> Result<Vec<TwilioCallEvent>, TwilioCallError> {
        match command {
            TwilioCallCommand::Report { report } => {
                if report.key.is_empty() || report.call_status.is_empty() {
                    return Err(TwilioCallError::InvalidInput(
                        "a status report needs a key and a status".into(),
                    ));
                }
                if self.reports.iter().any(|r| r.key == report.key) {
                    return Ok(Vec::new());
                }
                Ok(vec![TwilioCallEvent::StatusReported { report }])
            }
        }
    }
}

impl Aggregate for TwilioCall {
    const TYPE: &'static str = "twilio_call";
    type Command = TwilioCallCommand;
    type Event = TwilioCallEvent;
    type Error = TwilioCallError;
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
            TwilioCallEvent::StatusReported { report } => self.reports.push(report),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use cqrs_es::test::TestFramework;

    use super::*;

    type TwilioCallTest = TestFramework<TwilioCall>;

    fn report(status: &str, sequence: i64) -> StatusReport {
        StatusReport {
            key: format!("CA1:{status}:{sequence}"),
            call_status: status.into(),
            sequence_number: Some(sequence),
            from: Some("+15550001111".into()),
            to: Some("+15550002222".into()),
            direction: Some("inbound".into()),
            call_duration: (status == "completed").then_some(42),
            at: Utc.timestamp_opt(1_700_000_000 + sequence, 0).unwrap(),
        }
    }

    #[test]
    fn an_unmatched_callback_is_kept() {
        TwilioCallTest::with(())
            .given_no_previous_events()
            .when(TwilioCallCommand::Report {
                report: report("ringing", 0),
            })
            .then_expect_events(vec![TwilioCallEvent::StatusReported {
                report: report("ringing", 0),
            }]);
    }

    #[test]
    fn a_redelivered_callback_is_kept_once() {
        TwilioCallTest::with(())
            .given(vec![TwilioCallEvent::StatusReported {
                report: report("ringing", 0),
            }])
            .when(TwilioCallCommand::Report {
                report: report("ringing", 0),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn later_statuses_are_kept_in_arrival_order() {
        TwilioCallTest::with(())
            .given(vec![TwilioCallEvent::StatusReported {
                report: report("ringing", 0),
            }])
            .when(TwilioCallCommand::Report {
                report: report("completed", 2),
            })
            .then_expect_events(vec![TwilioCallEvent::StatusReported {
                report: report("completed", 2),
            }]);
        let state = crate::replay::<TwilioCall>(vec![
            TwilioCallEvent::StatusReported {
                report: report("ringing", 0),
            },
            TwilioCallEvent::StatusReported {
                report: report("completed", 2),
            },
        ]);
        let statuses: Vec<_> = state
            .reports
            .iter()
            .map(|r| r.call_status.as_str())
            .collect();
        assert_eq!(statuses, ["ringing", "completed"]);
    }

    #[test]
    fn a_report_without_a_key_or_status_is_refused() {
        let mut blank = report("ringing", 0);
        blank.call_status.clear();
        TwilioCallTest::with(())
            .given_no_previous_events()
            .when(TwilioCallCommand::Report { report: blank })
            .then_expect_error(TwilioCallError::InvalidInput(
                "a status report needs a key and a status".into(),
            ));
    }

    #[test]
    fn the_event_type_is_pinned() {
        let event = TwilioCallEvent::StatusReported {
            report: report("ringing", 0),
        };
        assert_eq!(event.event_type(), "StatusReported");
        assert_eq!(event.event_version(), "1");
        assert_eq!(
            TwilioCallError::InvalidInput(String::new()).code(),
            "invalid_input"
        );
    }
}
