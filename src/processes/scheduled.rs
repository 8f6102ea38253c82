//! What a schedule's run does (`src/schedules.rs` fires the runs): one process instance per
//! run (`scheduled_run`, subject `{schedule}:{scheduled epoch seconds}`), so a run survives a
//! crash and its failures show like any process's.
//!
//! - `billing_periods`: every subscription whose metering period has ended gets its close
//!   requested (the billing cycle process takes it from there).
//! - `usage_daily` (02:00 UTC, the seed's Workflow 5): the safety net of metering. For each
//!   billing subscription, calls of the current period that ended but were never metered
//!   (their metering process never started or gave up) are metered now, and any usage
//!   threshold reached and not yet announced is announced.

use aggregates::process::StepPlan;
use aggregates::schedule::ScheduleEvent;
use aggregates::subscription::SubscriptionCommand;
use async_trait::async_trait;
use eventlog::StoredEvent;
use projections::usage::billable_minutes;
use projections::DomainEvent;
use serde_json::{json, Value};
use sqlx::Row;

use super::{ProcessDefinition, Start, StepContext, StepResult};
use crate::app::{self, AppError, Caller};
use crate::schedules::{BILLING_PERIODS, USAGE_DAILY};

pub const KIND: &str = "scheduled_run";

pub struct ScheduledRuns;

/// `(subscription, organization, metering period start, end)` of every subscription with
/// an open metering period (the read model: the aggregate checks every command).
async fn metered(ctx: &StepContext<'_>) -> Result<Vec<(String, String, i64, i64)>, AppError> {
    let rows = sqlx::query(
        "SELECT subscription_id, organization_id, metering_period_start, metering_period_end \
         FROM billing_subscriptions WHERE metering_period_start IS NOT NULL \
         AND organization_id IS NOT NULL ORDER BY subscription_id",
    )
    .fetch_all(ctx.state.store.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

fn caller(organization: &str) -> Option<Caller> {
    uuid::Uuid::parse_str(organization)
        .ok()
        .map(|org| Caller::process(KIND, org))
}

/// Requests the close of every ended period.
async fn close_ended_periods(ctx: &StepContext<'_>) -> StepResult {
    let subscriptions = match metered(ctx).await {
        Ok(s) => s,
        Err(err) => return err.into(),
    };
    let now = ctx.now.timestamp();
    let (mut requested, mut failed) = (0, Vec::new());
    for (subscription, organization, start, end) in subscriptions {
        let Some(caller) = caller(&organization).filter(|_| end <= now) else {
            continue;
        };
        let command = SubscriptionCommand::RequestPeriodClose {
            period_start: start,
            at: ctx.now,
        };
        let key = format!("close-request:{subscription}:{start}");
        match app::billing::execute(ctx.state, &caller, &subscription, command, &key).await {
            Ok(done) => requested += done.events.len(),
            // Closed meanwhile (the read model lagged): nothing to do.
            Err(err) if err.code == "invalid_input" => {}
            Err(err) => failed.push(format!("{subscription}: {}", err.message)),
        }
    }
    if failed.is_empty() {
        StepResult::Succeeded(json!({ "close_requested": requested }))
    } else {
        StepResult::retry(failed.join("; "))
    }
}

/// Ended calls of `organization` in `[from, to)` epoch ms, with their minutes and end time.
async fn ended_calls(
    ctx: &StepContext<'_>,
    organization: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(String, i64, i64)>, AppError> {
    let rows = sqlx::query(
        "SELECT id, duration_seconds, ended_at FROM calls WHERE organization_id = $1 \
         AND ended_at >= $2 AND ended_at < $3 AND duration_seconds > 0",
    )
    .bind(organization.to_string())
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(ctx.state.store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let seconds: f64 = r.try_get(1)?;
            Ok((r.try_get(0)?, billable_minutes(seconds), r.try_get(2)?))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Meters what was missed and announces thresholds, per subscription.
async fn safety_net(ctx: &StepContext<'_>) -> StepResult {
    let subscriptions = match metered(ctx).await {
        Ok(s) => s,
        Err(err) => return err.into(),
    };
    let (mut metered_now, mut failed) = (0, Vec::new());
    for (subscription, organization, start, end) in subscriptions {
        let Some(caller) = caller(&organization) else {
            continue;
        };
        let result: Result<usize, AppError> = async {
            let state = app::billing::load(ctx.state, &subscription).await?;
            let calls = ended_calls(ctx, &organization, start * 1000, end * 1000).await?;
            let mut n = 0;
            for (call_id, minutes, ended_ms) in calls {
                if state.has_metered(&call_id) || minutes == 0 {
                    continue;
                }
                let at = chrono::DateTime::from_timestamp_millis(ended_ms).unwrap_or(ctx.now);
                let command = SubscriptionCommand::RecordUsage {
                    call_id: call_id.clone(),
                    minutes,
                    at,
                };
                let key = format!("usage-daily:{subscription}:{call_id}");
                let done =
                    app::billing::execute(ctx.state, &caller, &subscription, command, &key).await?;
                n += done.events.len().min(1);
            }
            let check = SubscriptionCommand::CheckThresholds { at: ctx.now };
            let key = format!("thresholds:{subscription}:{}", ctx.process.subject);
            app::billing::execute(ctx.state, &caller, &subscription, check, &key).await?;
            Ok(n)
        }
        .await;
        match result {
            Ok(n) => metered_now += n,
            Err(err) => failed.push(format!("{subscription}: {}", err.message)),
        }
    }
    if failed.is_empty() {
        StepResult::Succeeded(json!({ "calls_metered": metered_now }))
    } else {
        StepResult::retry(failed.join("; "))
    }
}

#[async_trait]
impl ProcessDefinition for ScheduledRuns {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn consumer(&self) -> &'static str {
        "process:scheduled_run"
    }

    fn wants(&self, event: &DomainEvent) -> bool {
        matches!(
            event,
            DomainEvent::Schedule(ScheduleEvent::ScheduleFired { .. })
        )
    }

    fn starts(&self, stored: &StoredEvent, event: &DomainEvent) -> Vec<Start> {
        let DomainEvent::Schedule(ScheduleEvent::ScheduleFired { scheduled_at, .. }) = event else {
            return Vec::new();
        };
        vec![Start::new(
            format!("{}:{}", stored.aggregate_id, scheduled_at.timestamp()),
            None,
            json!({ "schedule": stored.aggregate_id, "scheduled_at": scheduled_at }),
        )]
    }

    fn plan(&self, _input: &Value, first_backoff_ms: i64) -> Vec<StepPlan> {
        vec![StepPlan::new(
            "run",
            super::billing::policy(first_backoff_ms),
        )]
    }

    async fn run(&self, ctx: StepContext<'_>) -> StepResult {
        match ctx.input()["schedule"].as_str() {
            Some(BILLING_PERIODS) => close_ended_periods(&ctx).await,
            Some(USAGE_DAILY) => safety_net(&ctx).await,
            other => StepResult::give_up(format!("unknown schedule {other:?}")),
        }
    }
}
