//! The billing read models: `billing_subscriptions` (plan, status, Stripe's period, the
//! metering period, the last failed payment), `billing_period_usage` (minutes, overage and
//! thresholds per metering period), `billing_invoices` and `billing_periods` (closed periods
//! and their overage).

use aggregates::subscription::SubscriptionEvent;
use async_trait::async_trait;
use eventlog::StoredEvent;
use sqlx::{Any, Transaction};

use crate::projector::{DomainEvent, ProjectionError, Projector, Tables};
use crate::sql::flag;

pub struct BillingProjector;

fn status_name(status: &impl serde::Serialize) -> Result<String, ProjectionError> {
    Ok(serde_json::to_value(status)?
        .as_str()
        .unwrap_or("unknown")
        .to_string())
}

#[async_trait]
impl Projector for BillingProjector {
    fn name(&self) -> &'static str {
        "billing"
    }

    fn wants(&self, event: &DomainEvent) -> bool {
        matches!(event, DomainEvent::Subscription(_))
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "billing_subscriptions",
            "billing_invoices",
            "billing_periods",
            "billing_period_usage",
        ]
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        stored: &StoredEvent,
        event: &DomainEvent,
    ) -> Result<(), ProjectionError> {
        let DomainEvent::Subscription(event) = event else {
            return Ok(());
        };
        let subs = tables.name("billing_subscriptions");
        let invoices = tables.name("billing_invoices");
        let periods = tables.name("billing_periods");
        let usage = tables.name("billing_period_usage");
        let id = stored.aggregate_id.clone();
        let at = stored.recorded_at;
        match event {
            SubscriptionEvent::CheckoutCompleted {
                organization_id,
                customer_id,
                plan,
                ..
            } => {
                sqlx::query(&format!(
                    "INSERT INTO {subs} (subscription_id, organization_id, customer_id, status, \
                     plan, updated_at) VALUES ($1, $2, $3, 'active', $4, $5) \
                     ON CONFLICT (subscription_id) DO UPDATE SET \
                     organization_id = excluded.organization_id, \
                     customer_id = excluded.customer_id, \
                     plan = COALESCE(excluded.plan, {subs}.plan), updated_at = excluded.updated_at"
                ))
                .bind(id)
                .bind(organization_id.to_string())
                .bind(customer_id.clone())
                .bind(plan.clone())
                .bind(at)
                .execute(&mut **tx)
                .await?;
            }
            SubscriptionEvent::SubscriptionStatusChanged {
                organization_id,
                customer_id,
                status,
                plan,
                price_id,
                subscription_item_id,
                included_minutes,
                current_period_start,
                current_period_end,
                cancel_at_period_end,
                ..
            } => {
                let customer = (!customer_id.is_empty()).then(|| customer_id.clone());
                sqlx::query(&format!(
                    "INSERT INTO {subs} (subscription_id, organization_id, customer_id, status, \
                     plan, price_id, subscription_item_id, included_minutes, \
                     current_period_start, current_period_end, cancel_at_period_end, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                     ON CONFLICT (subscription_id) DO UPDATE SET \
                     organization_id = COALESCE(excluded.organization_id, {subs}.organization_id), \
                     customer_id = COALESCE(excluded.customer_id, {subs}.customer_id), \
                     status = excluded.status, plan = COALESCE(excluded.plan, {subs}.plan), \
                     price_id = COALESCE(excluded.price_id, {subs}.price_id), \
                     subscription_item_id = COALESCE(excluded.subscription_item_id, \
                     {subs}.subscription_item_id), \
                     included_minutes = COALESCE(excluded.included_minutes, {subs}.included_minutes), \
                     current_period_start = COALESCE(excluded.current_period_start, \
                     {subs}.current_period_start), \
                     current_period_end = COALESCE(excluded.current_period_end, \
                     {subs}.current_period_end), \
                     cancel_at_period_end = excluded.cancel_at_period_end, \
                     updated_at = excluded.updated_at"
                ))
                .bind(id)
                .bind(organization_id.map(|o| o.to_string()))
                .bind(customer)
                .bind(status_name(status)?)
                .bind(plan.clone())
                .bind(price_id.clone())
                .bind(subscription_item_id.clone())
                .bind(*included_minutes)
                .bind(*current_period_start)
                .bind(*current_period_end)
                .bind(flag(*cancel_at_period_end))
                .bind(at)
                .execute(&mut **tx)
                .await?;
            }
            SubscriptionEvent::SubscriptionCanceled { .. } => {
                sqlx::query(&format!(
                    "INSERT INTO {subs} (subscription_id, status, updated_at) \
                     VALUES ($1, 'canceled', $2) ON CONFLICT (subscription_id) DO UPDATE SET \
                     status = 'canceled', updated_at = excluded.updated_at"
                ))
                .bind(id)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            }
            SubscriptionEvent::InvoicePaid {
                invoice_id,
                amount_paid_cents,
                currency,
                period_start,
                period_end,
                hosted_invoice_url,
                ..
            } => {
                sqlx::query(&format!(
                    "INSERT INTO {invoices} (invoice_id, subscription_id, organization_id, \
                     status, amount_cents, currency, period_start, period_end, \
                     hosted_invoice_url, at) SELECT $1, $2, \
                     (SELECT organization_id FROM {subs} WHERE subscription_id = $2), 'paid', \
                     $3, $4, $5, $6, $7, $8 ON CONFLICT (invoice_id) DO UPDATE SET \
                     status = 'paid', amount_cents = excluded.amount_cents, at = excluded.at"
                ))
                .bind(invoice_id.clone())
                .bind(id.clone())
                .bind(*amount_paid_cents)
                .bind(currency.clone())
                .bind(*period_start)
                .bind(*period_end)
                .bind(hosted_invoice_url.clone())
                .bind(at)
                .execute(&mut **tx)
                .await?;
                // A paid invoice settles the failed payment shown.
                sqlx::query(&format!(
                    "UPDATE {subs} SET payment_failed_invoice = NULL, \
                     payment_failed_amount_cents = NULL, payment_failed_currency = NULL, \
                     payment_failed_at = NULL WHERE subscription_id = $1"
                ))
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
            SubscriptionEvent::PaymentFailed {
                invoice_id,
                amount_due_cents,
                currency,
                ..
            } => {
                sqlx::query(&format!(
                    "INSERT INTO {invoices} (invoice_id, subscription_id, organization_id, \
                     status, amount_cents, currency, at) SELECT $1, $2, \
                     (SELECT organization_id FROM {subs} WHERE subscription_id = $2), \
                     'payment_failed', $3, $4, $5 ON CONFLICT (invoice_id) DO UPDATE SET \
                     status = CASE WHEN {invoices}.status = 'paid' THEN 'paid' \
                     ELSE 'payment_failed' END"
                ))
                .bind(invoice_id.clone())
                .bind(id.clone())
                .bind(*amount_due_cents)
                .bind(currency.clone())
                .bind(at)
                .execute(&mut **tx)
                .await?;
                sqlx::query(&format!(
                    "UPDATE {subs} SET payment_failed_invoice = $1, \
                     payment_failed_amount_cents = $2, payment_failed_currency = $3, \
                     payment_failed_at = $4 WHERE subscription_id = $5"
                ))
                .bind(invoice_id.clone())
                .bind(*amount_due_cents)
                .bind(currency.clone())
                .bind(at)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
            SubscriptionEvent::UsageRecorded {
                minutes,
                period_start,
                overage_minutes,
                ..
            } => {
                sqlx::query(&format!(
                    "INSERT INTO {usage} (subscription_id, period_start, organization_id, calls, \
                     minutes, overage_minutes) SELECT $1, $2, \
                     (SELECT organization_id FROM {subs} WHERE subscription_id = $1), 1, $3, $4 \
                     ON CONFLICT (subscription_id, period_start) DO UPDATE SET \
                     calls = {usage}.calls + 1, minutes = {usage}.minutes + excluded.minutes, \
                     overage_minutes = {usage}.overage_minutes + excluded.overage_minutes"
                ))
                .bind(id)
                .bind(*period_start)
                .bind(*minutes)
                .bind(*overage_minutes)
                .execute(&mut **tx)
                .await?;
            }
            SubscriptionEvent::PeriodOpened {
                period_start,
                period_end,
            } => {
                sqlx::query(&format!(
                    "UPDATE {subs} SET metering_period_start = $1, metering_period_end = $2, \
                     updated_at = $3 WHERE subscription_id = $4"
                ))
                .bind(*period_start)
                .bind(*period_end)
                .bind(at)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
            SubscriptionEvent::UsageThresholdReached {
                period_start,
                threshold_pct,
                ..
            } => {
                // Thresholds arrive in increasing order, once each per period.
                sqlx::query(&format!(
                    "UPDATE {usage} SET thresholds = CASE WHEN thresholds = '' THEN $1 \
                     ELSE thresholds || ',' || $1 END \
                     WHERE subscription_id = $2 AND period_start = $3"
                ))
                .bind(threshold_pct.to_string())
                .bind(id)
                .bind(*period_start)
                .execute(&mut **tx)
                .await?;
            }
            SubscriptionEvent::PeriodClosed {
                period_start,
                period_end,
                total_minutes,
                included_minutes,
                overage_minutes,
                overage_cost_cents,
                reported_minutes,
                ..
            } => {
                sqlx::query(&format!(
                    "INSERT INTO {periods} (subscription_id, period_end, organization_id, \
                     period_start, total_minutes, included_minutes, overage_minutes, \
                     overage_cents, reported) SELECT $1, $2, \
                     (SELECT organization_id FROM {subs} WHERE subscription_id = $1), \
                     $3, $4, $5, $6, $7, $8 ON CONFLICT (subscription_id, period_end) DO NOTHING"
                ))
                .bind(id.clone())
                .bind(*period_end)
                .bind(*period_start)
                .bind(*total_minutes)
                .bind(*included_minutes)
                .bind(*overage_minutes)
                .bind(*overage_cost_cents)
                .bind(*reported_minutes)
                .execute(&mut **tx)
                .await?;
                sqlx::query(&format!(
                    "UPDATE {subs} SET metering_period_start = NULL, metering_period_end = NULL, \
                     updated_at = $1 WHERE subscription_id = $2"
                ))
                .bind(at)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
            SubscriptionEvent::OverageReported {
                period_start,
                overage_minutes,
                ..
            } => {
                sqlx::query(&format!(
                    "UPDATE {usage} SET reported_minutes = reported_minutes + $1 \
                     WHERE subscription_id = $2 AND period_start = $3"
                ))
                .bind(*overage_minutes)
                .bind(id)
                .bind(*period_start)
                .execute(&mut **tx)
                .await?;
            }
            SubscriptionEvent::PeriodCloseRequested { .. }
            | SubscriptionEvent::NotificationsRequested { .. } => {}
        }
        Ok(())
    }
}
