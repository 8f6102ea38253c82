//! The billing cycle of one metering period (the seed's Workflow 3), started when the
//! period sweep finds the period ended (`PeriodCloseRequested`): `close` it (its totals,
//! included and overage minutes and cost in `PeriodClosed`; the next period opened), then
//! `report` every overage report of the period still pending (a call's report that had not
//! got through, and what no call's report covered). The summary email follows
//! `PeriodClosed` (`notices`).

use std::sync::Arc;

use aggregates::process::StepPlan;
use aggregates::subscription::{SubscriptionCommand, SubscriptionEvent};
use async_trait::async_trait;
use eventlog::StoredEvent;
use projections::DomainEvent;
use serde_json::{json, Value};

use super::super::{ProcessDefinition, Start, StepContext, StepResult};
use super::{overage, policy};
use crate::app;
use crate::providers::stripe::Stripe;
use crate::state::AppState;

pub const KIND: &str = "billing_cycle";

pub struct BillingCycle {
    stripe: Stripe,
}

impl BillingCycle {
    pub fn new(state: &Arc<AppState>) -> Self {
        BillingCycle {
            stripe: app::billing::stripe(state).single_attempt(),
        }
    }

    async fn report_pending(
        &self,
        ctx: &StepContext<'_>,
        caller: &app::Caller,
        subscription_id: &str,
        period_start: i64,
    ) -> StepResult {
        let subscription = match app::billing::load(ctx.state, subscription_id).await {
            Ok(s) => s,
            Err(err) => return err.into(),
        };
        let keys: Vec<String> = subscription
            .pending_reports_of(period_start)
            .into_iter()
            .map(|(key, _)| key.clone())
            .collect();
        let mut reported = Vec::new();
        for key in &keys {
            match overage::report(ctx, &self.stripe, caller, subscription_id, key).await {
                StepResult::Succeeded(out) => reported.push(out),
                StepResult::Skipped(_) => {}
                failed => return failed,
            }
        }
        if reported.is_empty() {
            StepResult::Skipped("no overage left to report".into())
        } else {
            StepResult::Succeeded(json!({ "reported": reported }))
        }
    }
}

#[async_trait]
impl ProcessDefinition for BillingCycle {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn consumer(&self) -> &'static str {
        "process:billing_cycle"
    }

    fn wants(&self, event: &DomainEvent) -> bool {
        matches!(
            event,
            DomainEvent::Subscription(SubscriptionEvent::PeriodCloseRequested { .. })
        )
    }

    fn starts(&self, stored: &StoredEvent, event: &DomainEvent) -> Vec<Start> {
        let DomainEvent::Subscription(SubscriptionEvent::PeriodCloseRequested {
            period_start,
            period_end,
        }) = event
        else {
            return Vec::new();
        };
        let organization = stored
            .metadata
            .tenant_id
            .as_deref()
            .and_then(|t| uuid::Uuid::parse_str(t).ok());
        if organization.is_none() {
            return Vec::new();
        }
        vec![Start::new(
            format!("{}:{period_start}", stored.aggregate_id),
            organization,
            json!({
                "subscription_id": stored.aggregate_id,
                "period_start": period_start,
                "period_end": period_end,
            }),
        )]
    }

    fn plan(&self, _input: &Value, first_backoff_ms: i64) -> Vec<StepPlan> {
        let policy = policy(first_backoff_ms);
        vec![
            StepPlan::new("close", policy.clone()),
            StepPlan::new("report", policy).needs(&["close"]),
        ]
    }

    async fn run(&self, ctx: StepContext<'_>) -> StepResult {
        let Some(caller) = ctx.caller() else {
            return StepResult::give_up("the process has no organization");
        };
        let input = ctx.input();
        let (Some(subscription_id), Some(period_start)) = (
            input["subscription_id"].as_str(),
            input["period_start"].as_i64(),
        ) else {
            return StepResult::give_up("the process input names no subscription or period");
        };
        match ctx.step.plan.name.as_str() {
            "close" => {
                let subscription = match app::billing::load(ctx.state, subscription_id).await {
                    Ok(s) => s,
                    Err(err) => return err.into(),
                };
                let rate = ctx
                    .state
                    .config
                    .plans
                    .resolve(
                        subscription.price_id.as_deref(),
                        subscription.plan.as_deref(),
                    )
                    .map_or(0, |p| p.overage_cents_per_minute);
                let command = SubscriptionCommand::ClosePeriod {
                    period_start,
                    overage_rate_cents: rate,
                    at: ctx.now,
                };
                match app::billing::execute(
                    ctx.state,
                    &caller,
                    subscription_id,
                    command,
                    &ctx.key("close"),
                )
                .await
                {
                    Ok(done) => StepResult::Succeeded(json!({ "events": done.events.len() })),
                    Err(err) => err.into(),
                }
            }
            "report" => {
                self.report_pending(&ctx, &caller, subscription_id, period_start)
                    .await
            }
            other => StepResult::give_up(format!("unknown step {other}")),
        }
    }
}
