//! Cron schedules (croner): the daily usage aggregation at 02:00 UTC and the billing-period
//! sweep every five minutes.
//!
//! A run is an event (`ScheduleFired`, keyed by its scheduled time) on the schedule's own
//! stream; what the run does is a process started by that event (`processes::scheduled`).
//! So a run happens **once per cluster**: every service process ticks, and the second to
//! fire the same run finds it fired (the Schedule aggregate refuses a run at or before the
//! latest). **Missed runs are caught up**: a process starting after downtime fires the runs
//! scheduled since the latest one (up to `catch_up` of them, oldest first).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use aggregates::common::Timestamp;
use aggregates::schedule::ScheduleCommand;
use croner::Cron;
use eventlog::CommandMeta;

use crate::app::AppError;
use crate::state::AppState;

/// One schedule.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleSpec {
    pub name: &'static str,
    /// Five-field cron, UTC.
    pub cron: &'static str,
    /// How many missed runs a start-up fires (the latest ones).
    pub catch_up: usize,
}

pub const USAGE_DAILY: &str = "usage_daily";
pub const BILLING_PERIODS: &str = "billing_periods";

/// Every schedule this service keeps.
pub const SCHEDULES: &[ScheduleSpec] = &[
    // The seed's Workflow 5: aggregation and usage alerts, the safety net behind the
    // alerts sent as calls end. A week of missed days is caught up.
    ScheduleSpec {
        name: USAGE_DAILY,
        cron: "0 2 * * *",
        catch_up: 7,
    },
    // Billing periods that have ended are closed (Workflow 3). One sweep catches up all.
    ScheduleSpec {
        name: BILLING_PERIODS,
        cron: "*/5 * * * *",
        catch_up: 1,
    },
];

/// How often a service process looks at the schedules (the clock may be moved by tests).
const TICK: Duration = Duration::from_secs(2);

pub fn parse(spec: &ScheduleSpec) -> Result<Cron, AppError> {
    Cron::new(spec.cron)
        .parse()
        .map_err(|e| AppError::internal(format!("schedule {}: {e}", spec.name)))
}

/// The runs due at `now`: those after `since` (the latest run fired, or the registration),
/// at most the latest `catch_up`, oldest first.
pub fn due(cron: &Cron, since: Timestamp, now: Timestamp, catch_up: usize) -> Vec<Timestamp> {
    let mut out = VecDeque::new();
    for at in cron.iter_after(since) {
        if at > now {
            break;
        }
        out.push_back(at);
        if out.len() > catch_up {
            out.pop_front();
        }
    }
    out.into()
}

/// Registers every schedule and fires the runs due now. Returns the runs this call fired.
pub async fn tick(state: &AppState) -> Result<usize, AppError> {
    let now = state.clock.now();
    let mut fired = 0;
    for spec in SCHEDULES {
        let cron = parse(spec)?;
        let meta = CommandMeta::new("system:scheduler");
        let register = ScheduleCommand::Register {
            expression: spec.cron.to_string(),
            at: now,
        };
        let executed = state.schedules.execute(spec.name, register, &meta).await?;
        let schedule = executed.state;
        let Some(registered) = schedule.registered_at else {
            continue;
        };
        let since = schedule.last_run.map_or(registered, |l| l.max(registered));
        for at in due(&cron, since, now, spec.catch_up) {
            let key = format!("schedule:{}:{}", spec.name, at.timestamp());
            let fire = ScheduleCommand::Fire {
                scheduled_at: at,
                fired_at: now,
            };
            let meta = CommandMeta::new("system:scheduler").idempotency_key(key);
            let executed = state.schedules.execute(spec.name, fire, &meta).await?;
            if !executed.events.is_empty() {
                tracing::info!(schedule = spec.name, scheduled_at = %at, "schedule fired");
                fired += 1;
            }
        }
    }
    Ok(fired)
}

/// Ticks until `shutdown`.
pub fn spawn(
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let run = async {
            loop {
                if let Err(err) = tick(&state).await {
                    tracing::warn!(code = %err.code, error = %err.message, "schedule tick failed");
                }
                tokio::time::sleep(TICK).await;
            }
        };
        tokio::select! {
            _ = run => {}
            _ = shutdown => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn at(day: u32, hour: u32, minute: u32) -> Timestamp {
        Utc.with_ymd_and_hms(2026, 12, day, hour, minute, 0)
            .single()
            .expect("valid")
    }

    #[test]
    fn the_daily_run_missed_while_down_is_due_once() {
        let cron = parse(&SCHEDULES[0]).expect("parses");
        assert_eq!(
            due(&cron, at(5, 10, 0), at(6, 1, 59), 7),
            Vec::<Timestamp>::new()
        );
        assert_eq!(due(&cron, at(5, 10, 0), at(6, 2, 0), 7), vec![at(6, 2, 0)]);
        assert_eq!(
            due(&cron, at(6, 2, 0), at(6, 9, 0), 7),
            Vec::<Timestamp>::new()
        );
        // Three days down: three runs, oldest first.
        assert_eq!(
            due(&cron, at(3, 10, 0), at(6, 9, 0), 7),
            vec![at(4, 2, 0), at(5, 2, 0), at(6, 2, 0)]
        );
        // At most `catch_up`: the latest.
        assert_eq!(
            due(&cron, at(1, 10, 0), at(6, 9, 0), 2),
            vec![at(5, 2, 0), at(6, 2, 0)]
        );
    }

    #[test]
    fn a_frequent_schedule_catches_up_with_its_latest_run_only() {
        let cron = parse(&SCHEDULES[1]).expect("parses");
        assert_eq!(due(&cron, at(1, 0, 0), at(6, 9, 7), 1), vec![at(6, 9, 5)]);
        assert_eq!(
            due(&cron, at(6, 9, 0), at(6, 9, 12), 5),
            vec![at(6, 9, 5), at(6, 9, 10)]
        );
    }
}
