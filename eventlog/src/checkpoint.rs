//! Consumer checkpoints. They are written inside the consumer's own transaction, together with
//! its read-model changes, so a crash can neither lose nor double-apply an event.

use sqlx::{Any, Executor, Row, Transaction};

use crate::{now_ms, Checkpoint, StoreError};

pub async fn load<'e, E>(executor: E, name: &str) -> Result<Checkpoint, StoreError>
where
    E: Executor<'e, Database = Any>,
{
    let row =
        sqlx::query("SELECT transaction_id, position FROM consumer_checkpoints WHERE name = $1")
            .bind(name.to_string())
            .fetch_optional(executor)
            .await?;
    match row {
        Some(row) => Ok(Checkpoint {
            transaction_id: row.try_get(0)?,
            position: row.try_get(1)?,
        }),
        None => Ok(Checkpoint::START),
    }
}

pub async fn save(
    tx: &mut Transaction<'static, Any>,
    name: &str,
    checkpoint: Checkpoint,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO consumer_checkpoints (name, transaction_id, position, updated_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET \
         transaction_id = excluded.transaction_id, position = excluded.position, \
         updated_at = excluded.updated_at",
    )
    .bind(name.to_string())
    .bind(checkpoint.transaction_id)
    .bind(checkpoint.position)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn reset(tx: &mut Transaction<'static, Any>, name: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM consumer_checkpoints WHERE name = $1")
        .bind(name.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
