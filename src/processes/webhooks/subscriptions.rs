//! The webhook starter's own table, `webhook_subscriptions`: which endpoint takes which event
//! types, kept from the Organization's endpoint events in the starter's transaction (so it is
//! exactly as of the starter's checkpoint: an event goes to the endpoints subscribed when it
//! happened). The delivery worker keeps each endpoint's run of dead letters there too.

use aggregates::organization::OrganizationEvent;
use sqlx::{Any, AnyPool, Row, Transaction};

/// The event types column of an endpoint that takes every type (an integration connected
/// without a choice).
const ALL: &str = "*";

fn join(types: &[String]) -> String {
    if types.is_empty() {
        ALL.to_string()
    } else {
        types.join(",")
    }
}

/// Applies an Organization event to the subscriptions; true when it was an endpoint event.
pub async fn apply(
    tx: &mut Transaction<'static, Any>,
    organization: &str,
    event: &OrganizationEvent,
) -> Result<bool, sqlx::Error> {
    use OrganizationEvent::*;
    let (sql, endpoint, value): (&str, Option<&String>, Option<String>) = match event {
        WebhookEndpointCreated {
            endpoint_id,
            event_types,
            enabled,
            ..
        } => {
            upsert(tx, organization, endpoint_id, &join(event_types), !enabled).await?;
            return Ok(true);
        }
        WebhookEndpointRegistered {
            endpoint_id,
            event_types,
            ..
        } => {
            upsert(tx, organization, endpoint_id, &join(event_types), false).await?;
            return Ok(true);
        }
        WebhookEndpointUpdated {
            endpoint_id,
            event_types: Some(types),
            ..
        } => (
            "UPDATE webhook_subscriptions SET event_types = $3 \
             WHERE organization_id = $1 AND endpoint_id = $2",
            Some(endpoint_id),
            Some(join(types)),
        ),
        WebhookEndpointEnabled { endpoint_id } => (
            "UPDATE webhook_subscriptions SET disabled = 0, dead_letter_streak = 0 \
             WHERE organization_id = $1 AND endpoint_id = $2",
            Some(endpoint_id),
            None,
        ),
        WebhookEndpointDisabled { endpoint_id, .. } => (
            "UPDATE webhook_subscriptions SET disabled = 1 \
             WHERE organization_id = $1 AND endpoint_id = $2",
            Some(endpoint_id),
            None,
        ),
        WebhookEndpointRemoved { endpoint_id } => (
            "DELETE FROM webhook_subscriptions WHERE organization_id = $1 AND endpoint_id = $2",
            Some(endpoint_id),
            None,
        ),
        OrganizationDeleted {} => (
            "DELETE FROM webhook_subscriptions WHERE organization_id = $1",
            None,
            None,
        ),
        _ => return Ok(false),
    };
    let mut query = sqlx::query(sql).bind(organization.to_string());
    if let Some(endpoint) = endpoint {
        query = query.bind(endpoint.clone());
    }
    if let Some(value) = value {
        query = query.bind(value);
    }
    query.execute(&mut **tx).await?;
    Ok(true)
}

async fn upsert(
    tx: &mut Transaction<'static, Any>,
    organization: &str,
    endpoint: &str,
    types: &str,
    disabled: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO webhook_subscriptions (organization_id, endpoint_id, event_types, disabled) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (organization_id, endpoint_id) \
         DO UPDATE SET event_types = $3, disabled = $4",
    )
    .bind(organization.to_string())
    .bind(endpoint.to_string())
    .bind(types.to_string())
    .bind(i64::from(disabled))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An enabled endpoint and the event types it takes.
pub struct Subscription {
    endpoint_id: String,
    event_types: String,
}

/// The enabled endpoints of `organization`, in endpoint order.
pub async fn enabled(
    tx: &mut Transaction<'static, Any>,
    organization: &str,
) -> Result<Vec<Subscription>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT endpoint_id, event_types FROM webhook_subscriptions \
         WHERE organization_id = $1 AND disabled = 0 ORDER BY endpoint_id",
    )
    .bind(organization.to_string())
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Subscription {
                endpoint_id: row.try_get(0)?,
                event_types: row.try_get(1)?,
            })
        })
        .collect()
}

/// Of `subscriptions`, the endpoints that take `event_type`.
pub fn taking(subscriptions: &[Subscription], event_type: &str) -> Vec<String> {
    subscriptions
        .iter()
        .filter(|s| s.event_types == ALL || s.event_types.split(',').any(|t| t == event_type))
        .map(|s| s.endpoint_id.clone())
        .collect()
}

/// Counts a dead letter against the endpoint (once per delivery) and answers the run of
/// dead letters in a row.
pub async fn dead_lettered(
    pool: &AnyPool,
    organization: &str,
    endpoint: &str,
    delivery: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_subscriptions SET dead_letter_streak = dead_letter_streak + 1, \
         last_dead_letter = $3 WHERE organization_id = $1 AND endpoint_id = $2 \
         AND (last_dead_letter IS NULL OR last_dead_letter <> $3)",
    )
    .bind(organization.to_string())
    .bind(endpoint.to_string())
    .bind(delivery.to_string())
    .execute(pool)
    .await?;
    let row = sqlx::query(
        "SELECT dead_letter_streak FROM webhook_subscriptions \
         WHERE organization_id = $1 AND endpoint_id = $2",
    )
    .bind(organization.to_string())
    .bind(endpoint.to_string())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
}

/// A delivery got through: the endpoint's run of dead letters ends.
pub async fn delivered(
    pool: &AnyPool,
    organization: &str,
    endpoint: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_subscriptions SET dead_letter_streak = 0 \
         WHERE organization_id = $1 AND endpoint_id = $2 AND dead_letter_streak > 0",
    )
    .bind(organization.to_string())
    .bind(endpoint.to_string())
    .execute(pool)
    .await?;
    Ok(())
}
