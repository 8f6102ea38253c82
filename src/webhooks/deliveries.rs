//! The raw-delivery ledger (`webhook_deliveries`).

use eventlog::{now_ms, EventStore};
use sqlx::Row;

use super::Outcome;

pub struct Delivery<'a> {
    pub provider: &'a str,
    pub key: &'a str,
    pub organization_id: Option<String>,
    pub message_type: Option<String>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// The stored answer to an earlier delivery with the same key.
pub async fn find(
    store: &EventStore,
    provider: &str,
    key: &str,
) -> Result<Option<Outcome>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT status_code, response, first_position, last_position, event_count \
         FROM webhook_deliveries WHERE provider = $1 AND delivery_key = $2",
    )
    .bind(provider.to_string())
    .bind(key.to_string())
    .fetch_optional(store.pool())
    .await?;
    row.map(|row| {
        let response: String = row.try_get(1)?;
        Ok(Outcome {
            status: u16::try_from(row.try_get::<i64, _>(0)?).unwrap_or(200),
            body: serde_json::from_str(&response).unwrap_or_default(),
            first_position: row.try_get(2)?,
            last_position: row.try_get(3)?,
            event_count: row.try_get(4)?,
        })
    })
    .transpose()
}

/// Records an accepted delivery and its answer (first write wins).
pub async fn record(
    store: &EventStore,
    delivery: Delivery<'_>,
    outcome: &Outcome,
) -> Result<(), sqlx::Error> {
    // One autocommit statement: atomic on its own, one round trip instead of three.
    sqlx::query(
        "INSERT INTO webhook_deliveries (provider, delivery_key, organization_id, message_type, \
         received_at, content_type, body, status_code, response, first_position, last_position, \
         event_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (provider, delivery_key) DO NOTHING",
    )
    .bind(delivery.provider.to_string())
    .bind(delivery.key.to_string())
    .bind(delivery.organization_id)
    .bind(delivery.message_type)
    .bind(now_ms())
    .bind(delivery.content_type.map(str::to_string))
    .bind(String::from_utf8_lossy(delivery.body).into_owned())
    .bind(i64::from(outcome.status))
    .bind(outcome.body.to_string())
    .bind(outcome.first_position)
    .bind(outcome.last_position)
    .bind(outcome.event_count)
    .execute(store.pool())
    .await?;
    Ok(())
}

pub fn sha256_hex(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
        hasher.update([0u8]);
    }
    hex::encode(hasher.finalize())
}
