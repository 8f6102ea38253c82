//! The usage-metering starter's own table, `billing_accounts`: each organization's billing
//! subscription as the log stood at the starter's checkpoint, kept from the Subscription's
//! events in the starter's transaction. A call is metered on the subscription that was live
//! when the call ended, whatever the read models say by the time the worker runs.

use aggregates::subscription::{SubscriptionEvent, SubscriptionStatus};
use sqlx::{Any, Row, Transaction};

/// Statuses that bill usage.
fn live(status: &str) -> bool {
    matches!(status, "active" | "trialing" | "past_due")
}

fn name(status: SubscriptionStatus) -> &'static str {
    use SubscriptionStatus::*;
    match status {
        Incomplete => "incomplete",
        IncompleteExpired => "incomplete_expired",
        Trialing => "trialing",
        Active => "active",
        PastDue => "past_due",
        Canceled => "canceled",
        Unpaid => "unpaid",
        Paused => "paused",
    }
}

async fn organization_of(
    tx: &mut Transaction<'static, Any>,
    subscription: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row =
        sqlx::query("SELECT organization_id FROM billing_accounts WHERE subscription_id = $1")
            .bind(subscription.to_string())
            .fetch_optional(&mut **tx)
            .await?;
    row.map(|r| r.try_get::<String, _>(0)).transpose()
}

/// Records `status` of `subscription` for `organization`. A subscription that does not bill
/// never displaces another one that does.
async fn record(
    tx: &mut Transaction<'static, Any>,
    organization: &str,
    subscription: &str,
    status: &str,
    position: i64,
) -> Result<(), sqlx::Error> {
    let current = sqlx::query(
        "SELECT subscription_id, status FROM billing_accounts WHERE organization_id = $1",
    )
    .bind(organization.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = current {
        let (other, other_status): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        if other != subscription && live(&other_status) && !live(status) {
            return Ok(());
        }
    }
    sqlx::query(
        "INSERT INTO billing_accounts (organization_id, subscription_id, status, position) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (organization_id) DO UPDATE SET \
         subscription_id = excluded.subscription_id, status = excluded.status, \
         position = excluded.position",
    )
    .bind(organization.to_string())
    .bind(subscription.to_string())
    .bind(status.to_string())
    .bind(position)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies a Subscription event (of `subscription`, at log `position`).
pub async fn apply(
    tx: &mut Transaction<'static, Any>,
    subscription: &str,
    event: &SubscriptionEvent,
    position: i64,
) -> Result<(), sqlx::Error> {
    let (organization, status) = match event {
        SubscriptionEvent::CheckoutCompleted {
            organization_id, ..
        } => (Some(organization_id.to_string()), "active"),
        SubscriptionEvent::SubscriptionStatusChanged {
            organization_id,
            status,
            ..
        } => (organization_id.map(|o| o.to_string()), name(*status)),
        SubscriptionEvent::SubscriptionCanceled { .. } => (None, "canceled"),
        _ => return Ok(()),
    };
    let organization = match organization {
        Some(org) => Some(org),
        None => organization_of(tx, subscription).await?,
    };
    match organization {
        Some(org) => record(tx, &org, subscription, status, position).await,
        // A status for a subscription no checkout tied to an organization yet: the checkout
        // (or a later sync naming the organization) records it.
        None => Ok(()),
    }
}

/// The organization's billing subscription, if it bills usage.
pub async fn billing(
    tx: &mut Transaction<'static, Any>,
    organization: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT subscription_id, status FROM billing_accounts WHERE organization_id = $1",
    )
    .bind(organization.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (subscription, status): (String, String) = (row.try_get(0)?, row.try_get(1)?);
    Ok(live(&status).then_some(subscription))
}
