//! Blue/green rebuild: replay the whole log into fresh copies of a projector's tables, catch
//! up, then swap them in and move the live checkpoint in one transaction.
//!
//! The fresh tables are copies of the migration-owned live tables (PostgreSQL `LIKE ...
//! INCLUDING ALL`; SQLite re-runs the live table's own DDL under the new name), so migrations
//! stay the only source of schema.

use eventlog::{checkpoint, Backend, Checkpoint, EventStore};
use sqlx::{Any, Executor, Row, Transaction};

use crate::projector::{ProjectionError, Projector, Tables};
use crate::runner::{apply_batch, ProjectorHandle};

const REBUILD_BATCH: i64 = 5_000;

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    pub projector: &'static str,
    pub events: u64,
    pub checkpoint: Checkpoint,
}

fn rebuild_checkpoint_name(projector: &dyn Projector) -> String {
    format!("{}__rebuild", projector.name())
}

/// Rebuilds `handle`'s projector from position 0 and swaps the result in.
pub async fn rebuild(
    store: &EventStore,
    handle: &ProjectorHandle,
) -> Result<RebuildReport, ProjectionError> {
    let projector = handle.projector.as_ref();
    prepare_fresh_tables(store, projector).await?;
    let name = rebuild_checkpoint_name(projector);
    // Catch up without blocking the live projector...
    let mut events = catch_up(store, projector, &name).await?;
    // ...then stop it for the last few events and the swap.
    let _pause = handle.batch_lock.lock().await;
    events += catch_up(store, projector, &name).await?;
    let done = swap(store, projector, &name).await?;
    Ok(RebuildReport {
        projector: projector.name(),
        events,
        checkpoint: done,
    })
}

/// Rebuilds several projectors at once (each has its own tables and checkpoint), returning
/// each report with the time it took.
pub async fn rebuild_all(
    store: &EventStore,
    handles: &[ProjectorHandle],
) -> Result<Vec<(RebuildReport, std::time::Duration)>, ProjectionError> {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, handle) in handles.iter().enumerate() {
        let (store, handle) = (store.clone(), handle.clone());
        tasks.spawn(async move {
            let started = std::time::Instant::now();
            let report = rebuild(&store, &handle).await;
            (index, report.map(|r| (r, started.elapsed())))
        });
    }
    let mut done = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (index, report) = joined.map_err(|e| {
            ProjectionError::Store(eventlog::StoreError::UnsupportedUrl(format!(
                "rebuild task failed: {e}"
            )))
        })?;
        done.push((index, report?));
    }
    done.sort_by_key(|(index, _)| *index);
    Ok(done.into_iter().map(|(_, report)| report).collect())
}

/// Replays everything after the rebuild checkpoint into the fresh tables.
async fn catch_up(
    store: &EventStore,
    projector: &dyn Projector,
    name: &str,
) -> Result<u64, ProjectionError> {
    let mut applied = 0u64;
    loop {
        let from = checkpoint::load(store.pool(), name).await?;
        let events = store.read_all(from, REBUILD_BATCH).await?;
        if events.is_empty() {
            return Ok(applied);
        }
        apply_batch(store, projector, Tables::REBUILD, name, &events).await?;
        applied += events.len() as u64;
    }
}

async fn prepare_fresh_tables(
    store: &EventStore,
    projector: &dyn Projector,
) -> Result<(), ProjectionError> {
    let mut tx = store.backend().begin_write(store.pool()).await?;
    checkpoint::reset(&mut tx, &rebuild_checkpoint_name(projector)).await?;
    for table in projector.tables() {
        let fresh = Tables::REBUILD.name(table);
        tx.execute(format!("DROP TABLE IF EXISTS {fresh}").as_str())
            .await?;
        match store.backend() {
            Backend::Postgres => {
                tx.execute(format!("CREATE TABLE {fresh} (LIKE {table} INCLUDING ALL)").as_str())
                    .await?;
            }
            Backend::Sqlite => copy_sqlite_schema(&mut tx, table, &fresh).await?,
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Re-runs the DDL SQLite stored for `table` (and its indexes) under the fresh name.
async fn copy_sqlite_schema(
    tx: &mut Transaction<'static, Any>,
    table: &str,
    fresh: &str,
) -> Result<(), ProjectionError> {
    let rows = sqlx::query(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = $1 AND sql IS NOT NULL \
         ORDER BY CASE type WHEN 'table' THEN 0 ELSE 1 END",
    )
    .bind(table.to_string())
    .fetch_all(&mut **tx)
    .await?;
    for row in rows {
        let kind: String = row.try_get(0)?;
        let name: String = row.try_get(1)?;
        let sql: String = row.try_get(2)?;
        let ddl = if kind == "table" {
            replace_identifier(&sql, table, fresh)
        } else {
            // Index names are global: alternate a suffix so live and fresh never collide.
            let new_name = match name.strip_suffix("__b") {
                Some(base) => base.to_string(),
                None => format!("{name}__b"),
            };
            let renamed = replace_identifier(&sql, &name, &new_name);
            replace_identifier(&renamed, table, fresh)
        };
        tx.execute(ddl.as_str()).await?;
    }
    Ok(())
}

/// Replaces whole-word occurrences of identifier `from` (optionally quoted) with `to`.
fn replace_identifier(sql: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let bytes = sql.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < sql.len() {
        if sql[i..].starts_with(from)
            && (i == 0 || !is_ident(bytes[i - 1]))
            && bytes.get(i + from.len()).is_none_or(|b| !is_ident(*b))
        {
            out.push_str(to);
            i += from.len();
        } else {
            let ch = sql[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Swaps fresh tables in and moves the live checkpoint to the rebuild's, atomically.
async fn swap(
    store: &EventStore,
    projector: &dyn Projector,
    name: &str,
) -> Result<Checkpoint, ProjectionError> {
    let mut tx = store.backend().begin_write(store.pool()).await?;
    let done = checkpoint::load(&mut *tx, name).await?;
    for table in projector.tables() {
        let fresh = Tables::REBUILD.name(table);
        let old = format!("{table}__old");
        tx.execute(format!("DROP TABLE IF EXISTS {old}").as_str())
            .await?;
        tx.execute(format!("ALTER TABLE {table} RENAME TO {old}").as_str())
            .await?;
        tx.execute(format!("ALTER TABLE {fresh} RENAME TO {table}").as_str())
            .await?;
        tx.execute(format!("DROP TABLE {old}").as_str()).await?;
    }
    checkpoint::save(&mut tx, projector.name(), done).await?;
    checkpoint::reset(&mut tx, name).await?;
    tx.commit().await?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::replace_identifier;

    #[test]
    fn identifiers_are_replaced_only_as_whole_words() {
        let sql = "CREATE TABLE calls (id TEXT, calls_x TEXT) ; CREATE INDEX i ON \"calls\" (id)";
        assert_eq!(
            replace_identifier(sql, "calls", "calls__rebuild"),
            "CREATE TABLE calls__rebuild (id TEXT, calls_x TEXT) ; CREATE INDEX i ON \
             \"calls__rebuild\" (id)"
        );
    }
}
