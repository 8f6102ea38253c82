//! Aggregate snapshots: the serialized state at a stream version, so loading a long stream
//! reads one row plus the events after it. A snapshot whose schema version differs from the
//! aggregate's current one is ignored and the stream is replayed instead.

use sqlx::{Any, AnyPool, Row, Transaction};

use crate::{now_ms, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub sequence: i64,
    pub schema_version: i32,
    pub payload: String,
}

pub(crate) async fn save(
    tx: &mut Transaction<'static, Any>,
    aggregate_type: &str,
    aggregate_id: &str,
    snapshot: &Snapshot,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO snapshots (aggregate_type, aggregate_id, sequence, schema_version, payload, \
         taken_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET sequence = excluded.sequence, \
         schema_version = excluded.schema_version, payload = excluded.payload, \
         taken_at = excluded.taken_at WHERE snapshots.sequence < excluded.sequence",
    )
    .bind(aggregate_type.to_string())
    .bind(aggregate_id.to_string())
    .bind(snapshot.sequence)
    .bind(i64::from(snapshot.schema_version))
    .bind(snapshot.payload.clone())
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn load(
    pool: &AnyPool,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<Snapshot>, StoreError> {
    let row = sqlx::query(
        "SELECT sequence, schema_version, payload FROM snapshots \
         WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(aggregate_type.to_string())
    .bind(aggregate_id.to_string())
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        let schema_version: i64 = row.try_get(1)?;
        Ok(Snapshot {
            sequence: row.try_get(0)?,
            schema_version: i32::try_from(schema_version).unwrap_or(-1),
            payload: row.try_get(2)?,
        })
    })
    .transpose()
}
