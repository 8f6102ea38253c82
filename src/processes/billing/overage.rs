//! Sending a pending overage report to Stripe as a Billing Meter event, then recording that
//! Stripe accepted it. The meter event's `identifier` (and its `Idempotency-Key`) derive
//! from the subscription and the report's key, so the per-call step and the period's close
//! sending the same report, or a retry after a crash, bill once.

use aggregates::subscription::SubscriptionCommand;
use serde_json::json;

use super::super::{StepContext, StepResult};
use crate::app::{self, Caller};
use crate::plans::DEFAULT_METER;
use crate::providers::stripe::{MeterEvent, Stripe};

/// Reports the pending report `key` of `subscription_id`: `Skipped` when nothing is
/// pending under that key (never accrued, or already accepted).
pub async fn report(
    ctx: &StepContext<'_>,
    stripe: &Stripe,
    caller: &Caller,
    subscription_id: &str,
    key: &str,
) -> StepResult {
    let subscription = match app::billing::load(ctx.state, subscription_id).await {
        Ok(s) => s,
        Err(err) => return err.into(),
    };
    let Some(pending) = subscription.pending_reports.get(key) else {
        return StepResult::Skipped(format!("no overage report `{key}` is pending"));
    };
    let Some(customer) = subscription
        .customer_id
        .as_deref()
        .filter(|c| !c.is_empty())
    else {
        return StepResult::retry("the subscription has no Stripe customer yet");
    };
    let plans = &ctx.state.config.plans;
    let meter = plans
        .resolve(
            subscription.price_id.as_deref(),
            subscription.plan.as_deref(),
        )
        .map_or(DEFAULT_METER, |p| p.meter_event_name.as_str());
    let identifier = format!("{subscription_id}:{key}");
    let event = MeterEvent {
        event_name: meter,
        customer_id: customer,
        value: pending.minutes,
        identifier: &identifier,
        timestamp: pending.at,
    };
    let org = caller.organization_id.to_string();
    let sent = match stripe.report_meter_event(&event, &org).await {
        Ok(sent) => sent,
        Err(err) => return StepResult::from_provider(err),
    };
    let minutes = pending.minutes;
    let command = SubscriptionCommand::ReportOverage {
        key: key.to_string(),
        meter_event_identifier: identifier.clone(),
    };
    let record_key = format!("overage-reported:{subscription_id}:{key}");
    match app::billing::execute(ctx.state, caller, subscription_id, command, &record_key).await {
        Ok(_) => StepResult::Succeeded(json!({
            "meter_event_identifier": identifier,
            "minutes": minutes,
            "sandbox": sent.sandbox,
        })),
        Err(err) => err.into(),
    }
}
