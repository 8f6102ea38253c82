//! What billing tells a business, each once: a usage threshold reached (80% and 100% of the
//! plan's minutes, to the owners and admins by email, and by SMS to the notification
//! numbers when the organization chose it), a period's usage summary (owners and admins),
//! and a failed payment (the owners: the seed's TODO). The step resolves the recipients and
//! asks the Subscription for the notifications under a key per notice; the notification
//! process sends them (Resend with an idempotency key, Twilio looked up before a resend).

use aggregates::organization::Role;
use aggregates::process::StepPlan;
use aggregates::subscription::{SubscriptionCommand, SubscriptionEvent};
use async_trait::async_trait;
use eventlog::StoredEvent;
use projections::DomainEvent;
use serde_json::{json, Value};

use super::super::{ProcessDefinition, Start, StepContext, StepResult};
use super::policy;
use crate::app::{self, billing::money};

pub const KIND: &str = "billing_notice";

pub struct BillingNotices;

fn day(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.format("%B %-d, %Y").to_string())
        .unwrap_or_default()
}

/// The notice an event calls for: its key (unique per subscription) and input.
fn notice(event: &SubscriptionEvent) -> Option<(String, Value)> {
    Some(match event {
        SubscriptionEvent::UsageThresholdReached {
            period_start,
            period_end,
            threshold_pct,
            used_minutes,
            included_minutes,
        } => (
            format!("usage:{period_start}:{threshold_pct}"),
            json!({
                "kind": "usage_threshold",
                "threshold_pct": threshold_pct,
                "used_minutes": used_minutes,
                "included_minutes": included_minutes,
                "period_start": period_start,
                "period_end": period_end,
            }),
        ),
        SubscriptionEvent::PeriodClosed {
            period_start,
            period_end,
            total_minutes,
            included_minutes,
            overage_minutes,
            overage_cost_cents,
            ..
        } => (
            format!("summary:{period_start}"),
            json!({
                "kind": "period_summary",
                "period_start": period_start,
                "period_end": period_end,
                "total_minutes": total_minutes,
                "included_minutes": included_minutes,
                "overage_minutes": overage_minutes,
                "overage_cost_cents": overage_cost_cents,
            }),
        ),
        SubscriptionEvent::PaymentFailed {
            invoice_id,
            amount_due_cents,
            currency,
            ..
        } => (
            format!("payment_failed:{invoice_id}"),
            json!({
                "kind": "payment_failed",
                "invoice_id": invoice_id,
                "amount_due_cents": amount_due_cents,
                "currency": currency,
            }),
        ),
        _ => return None,
    })
}

/// Subject and body of a notice.
fn compose(input: &Value, business: &str) -> (String, String) {
    let n = |key: &str| input[key].as_i64().unwrap_or(0);
    match input["kind"].as_str() {
        Some("usage_threshold") => (
            format!(
                "{business}: {}% of your plan's minutes used",
                n("threshold_pct")
            ),
            format!(
                "{business} has used {} of the {} minutes included in its plan for the period \
                 {} to {}.{}",
                n("used_minutes"),
                n("included_minutes"),
                day(n("period_start")),
                day(n("period_end")),
                if n("threshold_pct") >= 100 {
                    " Further minutes are billed as overage at your plan's rate."
                } else {
                    ""
                }
            ),
        ),
        Some("period_summary") => (
            format!("{business}: your usage from {}", day(n("period_start"))),
            format!(
                "Usage for {business}, {} to {}:\n- {} minutes used\n- {} minutes included\n\
                 - {} overage minutes ({})",
                day(n("period_start")),
                day(n("period_end")),
                n("total_minutes"),
                n("included_minutes"),
                n("overage_minutes"),
                money(n("overage_cost_cents")),
            ),
        ),
        _ => (
            format!("{business}: a payment failed"),
            format!(
                "Stripe could not collect {} ({}) for invoice {}. Update the payment method in \
                 the billing portal to keep your CallFlex number answering.",
                money(n("amount_due_cents")),
                input["currency"].as_str().unwrap_or("usd").to_uppercase(),
                input["invoice_id"].as_str().unwrap_or_default(),
            ),
        ),
    }
}

#[async_trait]
impl ProcessDefinition for BillingNotices {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn consumer(&self) -> &'static str {
        "process:billing_notice"
    }

    fn wants(&self, event: &DomainEvent) -> bool {
        matches!(event, DomainEvent::Subscription(e) if notice(e).is_some())
    }

    fn starts(&self, stored: &StoredEvent, event: &DomainEvent) -> Vec<Start> {
        let DomainEvent::Subscription(event) = event else {
            return Vec::new();
        };
        let organization = stored
            .metadata
            .tenant_id
            .as_deref()
            .and_then(|t| uuid::Uuid::parse_str(t).ok());
        let (Some((key, mut input)), Some(organization)) = (notice(event), organization) else {
            return Vec::new();
        };
        input["subscription_id"] = json!(stored.aggregate_id);
        input["key"] = json!(key);
        vec![Start::new(
            format!("{}:{key}", stored.aggregate_id),
            Some(organization),
            input,
        )]
    }

    fn plan(&self, _input: &Value, first_backoff_ms: i64) -> Vec<StepPlan> {
        vec![StepPlan::new("notify", policy(first_backoff_ms))]
    }

    async fn run(&self, ctx: StepContext<'_>) -> StepResult {
        let Some(caller) = ctx.caller() else {
            return StepResult::give_up("the notice has no organization");
        };
        let input = ctx.input();
        let (Some(subscription), Some(key)) =
            (input["subscription_id"].as_str(), input["key"].as_str())
        else {
            return StepResult::give_up("the notice names no subscription");
        };
        let organization = match app::organizations::load(ctx.state, &caller).await {
            Ok(o) => o,
            Err(err) => return err.into(),
        };
        let kind = input["kind"].as_str().unwrap_or_default();
        let roles: &[Role] = match kind {
            "payment_failed" => &[Role::Owner],
            _ => &[Role::Owner, Role::Admin],
        };
        let emails = app::billing::member_emails(&organization, roles);
        let settings = &organization.settings.notifications;
        let sms = if kind == "usage_threshold" && settings.usage_alerts_sms {
            settings.sms_numbers.clone()
        } else {
            Vec::new()
        };
        let (subject, body) = compose(input, &organization.name);
        let notifications = app::billing::notices(emails, sms, &subject, &body);
        if notifications.is_empty() {
            return StepResult::Skipped("nobody to tell".into());
        }
        let command = SubscriptionCommand::RequestNotifications {
            key: key.to_string(),
            reason: kind.to_string(),
            notifications,
            at: ctx.now,
        };
        match app::billing::execute(
            ctx.state,
            &caller,
            subscription,
            command,
            &ctx.key("request"),
        )
        .await
        {
            Ok(done) => StepResult::Succeeded(json!({ "events": done.events.len() })),
            Err(err) => err.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_notice_reads_as_a_business_owner_expects() {
        let (key, input) = notice(&SubscriptionEvent::UsageThresholdReached {
            period_start: 1_764_547_200,
            period_end: 1_767_225_600,
            threshold_pct: 100,
            used_minutes: 512,
            included_minutes: 500,
        })
        .expect("a notice");
        assert_eq!(key, "usage:1764547200:100");
        let (subject, body) = compose(&input, "Acme Haulage");
        assert_eq!(subject, "Acme Haulage: 100% of your plan's minutes used");
        assert!(body.contains("512 of the 500 minutes"), "{body}");
        assert!(
            body.contains("December 1, 2025 to January 1, 2026"),
            "{body}"
        );
        assert!(body.contains("billed as overage"), "{body}");
        let (_, input) = notice(&SubscriptionEvent::PeriodClosed {
            period_start: 1_764_547_200,
            period_end: 1_767_225_600,
            total_minutes: 540,
            included_minutes: 500,
            overage_minutes: 40,
            overage_rate_cents: 12,
            overage_cost_cents: 480,
            reported_minutes: 40,
            unbilled_minutes: 0,
        })
        .expect("a notice");
        let (_, body) = compose(&input, "Acme Haulage");
        assert!(body.contains("40 overage minutes ($4.80)"), "{body}");
        let (key, input) = notice(&SubscriptionEvent::PaymentFailed {
            invoice_id: "in_1".into(),
            amount_due_cents: 14_900,
            currency: "usd".into(),
            stripe_event_id: "evt_1".into(),
            stripe_created: 1,
        })
        .expect("a notice");
        assert_eq!(key, "payment_failed:in_1");
        let (_, body) = compose(&input, "Acme Haulage");
        assert!(body.contains("$149.00 (USD) for invoice in_1"), "{body}");
    }
}
