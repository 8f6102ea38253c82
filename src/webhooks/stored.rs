//! Reading the raw-delivery ledger back: the deliveries that built a call, or every delivery
//! received in a time range (for the audit's list and for `callflex redeliver`).

use std::collections::BTreeSet;

use eventlog::EventStore;
use sqlx::Row;

/// One accepted delivery as the ledger keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDelivery {
    pub provider: String,
    pub key: String,
    pub organization_id: Option<String>,
    pub message_type: Option<String>,
    /// Milliseconds since the epoch.
    pub received_at: i64,
    pub content_type: Option<String>,
    pub body: String,
    /// The answer we gave: its status and body, and where its events landed in the log.
    pub status_code: i64,
    pub response: String,
    pub first_position: i64,
    pub last_position: i64,
    pub event_count: i64,
}

const SELECT: &str = "SELECT provider, delivery_key, organization_id, message_type, received_at, \
     content_type, body, status_code, response, first_position, last_position, event_count \
     FROM webhook_deliveries";

fn decode(row: &sqlx::any::AnyRow) -> Result<StoredDelivery, sqlx::Error> {
    Ok(StoredDelivery {
        provider: row.try_get(0)?,
        key: row.try_get(1)?,
        organization_id: row.try_get(2)?,
        message_type: row.try_get(3)?,
        received_at: row.try_get(4)?,
        content_type: row.try_get(5)?,
        body: row.try_get(6)?,
        status_code: row.try_get(7)?,
        response: row.try_get(8)?,
        first_position: row.try_get(9)?,
        last_position: row.try_get(10)?,
        event_count: row.try_get(11)?,
    })
}

/// The deliveries whose events are on call stream `call_id` (its events' actors name them:
/// `provider:<provider>:<delivery key>`), in the order they were received.
pub async fn of_call(
    store: &EventStore,
    call_id: &str,
) -> Result<Vec<StoredDelivery>, eventlog::StoreError> {
    let events = store.read_stream("call", call_id, 0).await?;
    let named: BTreeSet<(String, String)> = events
        .iter()
        .filter_map(|e| {
            let mut parts = e.metadata.actor.splitn(3, ':');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("provider"), Some(provider), Some(key)) => {
                    Some((provider.to_string(), key.to_string()))
                }
                _ => None,
            }
        })
        .collect();
    let mut found = Vec::new();
    for (provider, key) in named {
        let row = sqlx::query(&format!(
            "{SELECT} WHERE provider = $1 AND delivery_key = $2"
        ))
        .bind(provider)
        .bind(key)
        .fetch_optional(store.pool())
        .await
        .map_err(eventlog::StoreError::from)?;
        if let Some(row) = row {
            found.push(decode(&row).map_err(eventlog::StoreError::from)?);
        }
    }
    found.sort_by(|a, b| (a.received_at, &a.key).cmp(&(b.received_at, &b.key)));
    Ok(found)
}

/// Every delivery received in `[from_ms, to_ms)` (of one organization, when given), in the
/// order received.
pub async fn in_range(
    store: &EventStore,
    from_ms: i64,
    to_ms: i64,
    organization: Option<&str>,
) -> Result<Vec<StoredDelivery>, eventlog::StoreError> {
    let rows = match organization {
        Some(org) => {
            sqlx::query(&format!(
                "{SELECT} WHERE received_at >= $1 AND received_at < $2 AND organization_id = $3 \
                 ORDER BY received_at, delivery_key"
            ))
            .bind(from_ms)
            .bind(to_ms)
            .bind(org.to_string())
            .fetch_all(store.pool())
            .await
        }
        None => {
            sqlx::query(&format!(
                "{SELECT} WHERE received_at >= $1 AND received_at < $2 \
                 ORDER BY received_at, delivery_key"
            ))
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(store.pool())
            .await
        }
    }
    .map_err(eventlog::StoreError::from)?;
    rows.iter()
        .map(|r| decode(r).map_err(eventlog::StoreError::from))
        .collect()
}
