//! Billing as processes on the log (the seed's Workflows 3 and 5):
//!
//! - [`UsageMetering`] (`usage_metering`, one per ended call of a billing organization):
//!   `record` the call's minutes on its subscription (the Subscription decides the period,
//!   the overage and any usage threshold crossed), then `report` the call's overage to
//!   Stripe as a Billing Meter event. Overage is reported **as calls end**, so Stripe's
//!   upcoming invoice is always current and a customer never meets a month of overage at
//!   once; the period's close reports whatever a call's report did not.
//! - [`notices::BillingNotices`] (`billing_notice`): the email (and SMS) a usage threshold,
//!   a closed period or a failed payment sends to the organization's owners and admins.
//! - [`cycle::BillingCycle`] (`billing_cycle`, one per closed period): close the period
//!   (totals, the next period opened), then send its pending overage reports.
//!
//! The period sweep and the daily safety net run from the schedules (`processes::scheduled`).

mod accounts;
pub mod cycle;
pub mod notices;
mod overage;

use std::sync::Arc;

use aggregates::call::CallEvent;
use aggregates::call::MAX_CALL_SECONDS;
use aggregates::process::{RetryPolicy, StepPlan};
use aggregates::subscription::{SubscriptionCommand, SubscriptionEvent};
use async_trait::async_trait;
use eventlog::StoredEvent;
use projections::usage::billable_minutes;
use projections::DomainEvent;
use serde_json::{json, Value};

use super::{ProcessDefinition, Start, StepContext, StepResult};
use crate::app;
use crate::providers::stripe::Stripe;
use crate::state::AppState;

pub const KIND: &str = "usage_metering";

/// The seed's billing activities: 5 attempts, back-off doubling.
pub fn policy(first_backoff_ms: i64) -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        first_backoff_ms,
        factor: 2,
        timeout_ms: 300_000,
        ..RetryPolicy::default()
    }
}

pub struct UsageMetering {
    stripe: Stripe,
}

impl UsageMetering {
    pub fn new(state: &Arc<AppState>) -> Self {
        UsageMetering {
            stripe: app::billing::stripe(state).single_attempt(),
        }
    }
}

fn text<'a>(input: &'a Value, key: &str) -> Option<&'a str> {
    input.get(key).and_then(Value::as_str)
}

#[async_trait]
impl ProcessDefinition for UsageMetering {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn consumer(&self) -> &'static str {
        "process:usage_metering"
    }

    fn wants(&self, event: &DomainEvent) -> bool {
        matches!(
            event,
            DomainEvent::Call(CallEvent::CallEnded { .. })
                | DomainEvent::Subscription(
                    SubscriptionEvent::CheckoutCompleted { .. }
                        | SubscriptionEvent::SubscriptionStatusChanged { .. }
                        | SubscriptionEvent::SubscriptionCanceled { .. }
                )
        )
    }

    fn starts(&self, _stored: &StoredEvent, _event: &DomainEvent) -> Vec<Start> {
        Vec::new()
    }

    async fn start(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        stored: &StoredEvent,
        event: &DomainEvent,
    ) -> Result<Vec<Start>, projections::ProjectionError> {
        let report = match event {
            DomainEvent::Subscription(e) => {
                accounts::apply(tx, &stored.aggregate_id, e, stored.position).await?;
                return Ok(Vec::new());
            }
            DomainEvent::Call(CallEvent::CallEnded { report }) => report,
            _ => return Ok(Vec::new()),
        };
        let Some(organization) = stored.metadata.tenant_id.as_deref() else {
            return Ok(Vec::new());
        };
        let seconds = report
            .duration_seconds
            .filter(|s| (0.0..=MAX_CALL_SECONDS).contains(s))
            .unwrap_or(0.0);
        let minutes = billable_minutes(seconds);
        if minutes == 0 {
            return Ok(Vec::new());
        }
        let Some(subscription) = accounts::billing(tx, organization).await? else {
            return Ok(Vec::new());
        };
        Ok(vec![Start::new(
            stored.aggregate_id.clone(),
            uuid::Uuid::parse_str(organization).ok(),
            json!({
                "call_id": stored.aggregate_id,
                "subscription_id": subscription,
                "minutes": minutes,
                "ended_at": report.ended_at.unwrap_or(report.at),
            }),
        )])
    }

    fn plan(&self, _input: &Value, first_backoff_ms: i64) -> Vec<StepPlan> {
        let policy = policy(first_backoff_ms);
        vec![
            StepPlan::new("record", policy.clone()),
            StepPlan::new("report", policy).needs(&["record"]),
        ]
    }

    async fn run(&self, ctx: StepContext<'_>) -> StepResult {
        let Some(caller) = ctx.caller() else {
            return StepResult::give_up("the process has no organization");
        };
        let input = ctx.input();
        let (Some(call_id), Some(subscription)) =
            (text(input, "call_id"), text(input, "subscription_id"))
        else {
            return StepResult::give_up("the process input names no call or subscription");
        };
        match ctx.step.plan.name.as_str() {
            "record" => {
                let minutes = input["minutes"].as_i64().unwrap_or(0);
                let at = input
                    .get("ended_at")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or(ctx.now);
                let command = SubscriptionCommand::RecordUsage {
                    call_id: call_id.to_string(),
                    minutes,
                    at,
                };
                match app::billing::execute(
                    ctx.state,
                    &caller,
                    subscription,
                    command,
                    &ctx.key("usage"),
                )
                .await
                {
                    Ok(done) => StepResult::Succeeded(json!({ "events": done.events.len() })),
                    Err(err) => err.into(),
                }
            }
            "report" => {
                let key = format!("usage:{call_id}");
                overage::report(&ctx, &self.stripe, &caller, subscription, &key).await
            }
            other => StepResult::give_up(format!("unknown step {other}")),
        }
    }
}
