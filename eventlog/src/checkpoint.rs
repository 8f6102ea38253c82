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

/// Moves checkpoint `name` from `from` to `to` only if it still is at `from`; false when another
/// consumer (another process, or a rebuild's swap) moved it meanwhile. Called first in the
/// consumer's transaction: the row lock it takes makes concurrent batches of one consumer
/// serialize, and the loser sees it is stale instead of applying events twice.
pub async fn advance(
    tx: &mut Transaction<'static, Any>,
    name: &str,
    from: Checkpoint,
    to: Checkpoint,
) -> Result<bool, StoreError> {
    let moved = sqlx::query(
        "UPDATE consumer_checkpoints SET transaction_id = $1, position = $2, updated_at = $3 \
         WHERE name = $4 AND transaction_id = $5 AND position = $6",
    )
    .bind(to.transaction_id)
    .bind(to.position)
    .bind(now_ms())
    .bind(name.to_string())
    .bind(from.transaction_id)
    .bind(from.position)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if moved == 1 {
        return Ok(true);
    }
    if from != Checkpoint::START {
        return Ok(false);
    }
    let created = sqlx::query(
        "INSERT INTO consumer_checkpoints (name, transaction_id, position, updated_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name.to_string())
    .bind(to.transaction_id)
    .bind(to.position)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(created == 1)
}

pub async fn reset(tx: &mut Transaction<'static, Any>, name: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM consumer_checkpoints WHERE name = $1")
        .bind(name.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
