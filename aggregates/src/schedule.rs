//! [`Schedule`]: one stream per cron schedule (the daily usage aggregation, period closes).
//!
//! Each run is an event keyed by its scheduled time: two service processes firing the same
//! run append it once (the second finds it already fired), and the runs a schedule missed
//! while no process was up are fired by the next one to start (the service computes which;
//! see `src/schedules.rs`). A run is never fired twice and never fired for a time before the
//! schedule was first registered.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::common::{emit, write_all, Timestamp};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Schedule {
    /// The cron expression in force.
    pub expression: Option<String>,
    /// When the schedule was first registered: runs before it are never fired.
    pub registered_at: Option<Timestamp>,
    /// The scheduled time of the latest run fired.
    pub last_run: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ScheduleCommand {
    /// Registers the schedule (a repeat with the same expression is a no-op; a new
    /// expression replaces the old one from `at`).
    Register { expression: String, at: Timestamp },
    /// Fires the run scheduled at `scheduled_at` (a run at or before the latest fired one,
    /// or before the registration, is a no-op).
    Fire {
        scheduled_at: Timestamp,
        fired_at: Timestamp,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ScheduleEvent {
    ScheduleRegistered {
        expression: String,
        at: Timestamp,
    },
    ScheduleFired {
        scheduled_at: Timestamp,
        fired_at: Timestamp,
    },
}

impl ScheduleEvent {
    pub fn name(&self) -> &'static str {
        match self {
            ScheduleEvent::ScheduleRegistered { .. } => "ScheduleRegistered",
            ScheduleEvent::ScheduleFired { .. } => "ScheduleFired",
        }
    }
}

impl DomainEvent for ScheduleEvent {
    fn event_type(&self) -> String {
        self.name().to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the schedule is not registered")]
    NotRegistered,
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl ScheduleError {
    pub fn code(&self) -> &'static str {
        match self {
            ScheduleError::NotRegistered => "schedule_not_registered",
            ScheduleError::InvalidInput(_) => "invalid_input",
        }
    }
}

impl Schedule {
    pub fn decide(&self, command: ScheduleCommand) -> Result<Vec<ScheduleEvent>, ScheduleError> {
        let mut scratch = self.clone();
        let mut out = Vec::new();
        match command {
            ScheduleCommand::Register { expression, at } => {
                if expression.trim().is_empty() {
                    return Err(ScheduleError::InvalidInput(
                        "the cron expression is empty".into(),
                    ));
                }
                if self.expression.as_deref() != Some(expression.as_str()) {
                    emit(
                        &mut scratch,
                        &mut out,
                        ScheduleEvent::ScheduleRegistered { expression, at },
                    );
                }
            }
            ScheduleCommand::Fire {
                scheduled_at,
                fired_at,
            } => {
                let registered = self.registered_at.ok_or(ScheduleError::NotRegistered)?;
                let new =
                    scheduled_at >= registered && self.last_run.is_none_or(|l| scheduled_at > l);
                if new {
                    emit(
                        &mut scratch,
                        &mut out,
                        ScheduleEvent::ScheduleFired {
                            scheduled_at,
                            fired_at,
                        },
                    );
                }
            }
        }
        Ok(out)
    }
}

impl Aggregate for Schedule {
    const TYPE: &'static str = "schedule";
    type Command = ScheduleCommand;
    type Event = ScheduleEvent;
    type Error = ScheduleError;
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
            ScheduleEvent::ScheduleRegistered { expression, at } => {
                self.expression = Some(expression);
                self.registered_at.get_or_insert(at);
            }
            ScheduleEvent::ScheduleFired { scheduled_at, .. } => {
                self.last_run = Some(scheduled_at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use cqrs_es::test::TestFramework;

    use super::*;

    fn at(hour: u32) -> Timestamp {
        Utc.with_ymd_and_hms(2026, 12, 6, hour, 0, 0)
            .single()
            .expect("valid time")
    }

    fn registered() -> ScheduleEvent {
        ScheduleEvent::ScheduleRegistered {
            expression: "0 2 * * *".into(),
            at: at(1),
        }
    }

    fn fired(hour: u32) -> ScheduleEvent {
        ScheduleEvent::ScheduleFired {
            scheduled_at: at(hour),
            fired_at: at(hour),
        }
    }

    fn fire(hour: u32) -> ScheduleCommand {
        ScheduleCommand::Fire {
            scheduled_at: at(hour),
            fired_at: at(hour),
        }
    }

    #[test]
    fn a_run_is_fired_once() {
        TestFramework::<Schedule>::with(())
            .given(vec![registered()])
            .when(fire(2))
            .then_expect_events(vec![fired(2)]);
        TestFramework::<Schedule>::with(())
            .given(vec![registered(), fired(2)])
            .when(fire(2))
            .then_expect_events(vec![]);
    }

    #[test]
    fn runs_before_the_registration_or_the_latest_run_are_not_fired() {
        TestFramework::<Schedule>::with(())
            .given(vec![registered()])
            .when(fire(0))
            .then_expect_events(vec![]);
        TestFramework::<Schedule>::with(())
            .given(vec![registered(), fired(5)])
            .when(fire(3))
            .then_expect_events(vec![]);
        TestFramework::<Schedule>::with(())
            .given_no_previous_events()
            .when(fire(2))
            .then_expect_error(ScheduleError::NotRegistered);
    }

    #[test]
    fn registering_again_keeps_the_first_registration_time() {
        TestFramework::<Schedule>::with(())
            .given(vec![registered()])
            .when(ScheduleCommand::Register {
                expression: "0 2 * * *".into(),
                at: at(9),
            })
            .then_expect_events(vec![]);
        let changed = ScheduleEvent::ScheduleRegistered {
            expression: "0 3 * * *".into(),
            at: at(9),
        };
        let schedule = crate::replay::<Schedule>(vec![registered(), changed]);
        assert_eq!(schedule.registered_at, Some(at(1)));
        assert_eq!(schedule.expression.as_deref(), Some("0 3 * * *"));
    }
}
