//! Blue/green rebuild: replay the whole log into fresh copies of a projector's tables, catch
//! up, then swap them in and move the live checkpoint in one transaction.
//!
//! The fresh tables are copies of the migration-owned live tables (PostgreSQL `LIKE ...
//! INCLUDING ALL`; SQLite re-runs the live table's own DDL under the new name), so migrations
//! stay the only source of schema.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventlog::{checkpoint, Backend, Checkpoint, EventStore, StoredEvent};
use sqlx::{Any, Executor, Row, Transaction};
use tokio::sync::mpsc;

use crate::projector::{DomainEvent, ProjectionError, Projector, Tables};
use crate::runner::{apply_batch, read_decoded, ProjectorHandle};

const REBUILD_BATCH: i64 = 5_000;

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    pub projector: &'static str,
    pub events: u64,
    pub checkpoint: Checkpoint,
    /// Time this projector spent applying batches (the log is read once for all of them).
    pub apply_time: Duration,
}

fn rebuild_checkpoint_name(projector: &dyn Projector) -> String {
    format!("{}__rebuild", projector.name())
}

/// Rebuilds `handle`'s projector from position 0 and swaps the result in.
pub async fn rebuild(
    store: &EventStore,
    handle: &ProjectorHandle,
) -> Result<RebuildReport, ProjectionError> {
    let mut reports = rebuild_all(store, std::slice::from_ref(handle)).await?;
    let (report, _) = reports
        .pop()
        .ok_or_else(|| ProjectionError::Rebuild("rebuild produced no report".into()))?;
    Ok(report)
}

/// Where a rebuild stands: after each batch, each projector's events applied so far and the
/// log position reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub projector: &'static str,
    pub events: u64,
    pub position: i64,
}

/// Told of every [`Progress`] (the command line draws bars from it).
pub type OnProgress = Arc<dyn Fn(Progress) + Send + Sync>;

/// Rebuilds several projectors together: the log is read and decoded once, each batch is
/// applied to every projector's fresh tables concurrently (one transaction each, each with its
/// own checkpoint), then each projector's tables are swapped in. Returns each report with the
/// wall time of the whole rebuild.
pub async fn rebuild_all(
    store: &EventStore,
    handles: &[ProjectorHandle],
) -> Result<Vec<(RebuildReport, Duration)>, ProjectionError> {
    rebuild_all_with(store, handles, None).await
}

/// [`rebuild_all`], telling `on_progress` after every batch.
pub async fn rebuild_all_with(
    store: &EventStore,
    handles: &[ProjectorHandle],
    on_progress: Option<OnProgress>,
) -> Result<Vec<(RebuildReport, Duration)>, ProjectionError> {
    let started = Instant::now();
    let projectors: Vec<Arc<dyn Projector>> = handles.iter().map(|h| h.projector.clone()).collect();
    for projector in &projectors {
        let name = rebuild_checkpoint_name(projector.as_ref());
        prepare_fresh_tables(store, projector.as_ref(), Tables::REBUILD, &name, true).await?;
    }
    let mut apply_time = vec![Duration::ZERO; projectors.len()];
    let mut counts = vec![0u64; projectors.len()];
    let report = |counts: &[u64], position: i64| {
        if let Some(on_progress) = &on_progress {
            for (projector, events) in projectors.iter().zip(counts) {
                on_progress(Progress {
                    projector: projector.name(),
                    events: *events,
                    position,
                });
            }
        }
    };
    // Catch up without blocking the live projectors...
    let mut events = catch_up(store, &projectors, &mut apply_time, &mut counts, &report).await?;
    // ...build the secondary indexes left out while the bulk went in...
    for projector in &projectors {
        create_deferred_indexes(store, projector.as_ref()).await?;
    }
    // ...then stop them for the last few events and the swaps.
    let mut pauses = Vec::with_capacity(handles.len());
    for handle in handles {
        pauses.push(handle.batch_lock.lock().await);
    }
    events += catch_up(store, &projectors, &mut apply_time, &mut counts, &report).await?;
    let mut reports = Vec::with_capacity(projectors.len());
    for (projector, apply_time) in projectors.iter().zip(apply_time) {
        let name = rebuild_checkpoint_name(projector.as_ref());
        let done = swap(store, projector.as_ref(), &name).await?;
        reports.push(RebuildReport {
            projector: projector.name(),
            events,
            checkpoint: done,
            apply_time,
        });
    }
    // The live runners re-load the swapped-in checkpoints before their next batch.
    for progress in &mut pauses {
        progress.reset();
    }
    let took = started.elapsed();
    Ok(reports.into_iter().map(|r| (r, took)).collect())
}

type Batch = Arc<Vec<(StoredEvent, DomainEvent)>>;

/// Replays everything after the rebuild checkpoints into the fresh tables. One task reads and
/// decodes the next batch while the projectors apply the current one.
async fn catch_up(
    store: &EventStore,
    projectors: &[Arc<dyn Projector>],
    apply_time: &mut [Duration],
    counts: &mut [u64],
    report: &(dyn Fn(&[u64], i64) + Sync),
) -> Result<u64, ProjectionError> {
    let mut positions = Vec::with_capacity(projectors.len());
    for projector in projectors {
        let name = rebuild_checkpoint_name(projector.as_ref());
        positions.push(checkpoint::load(store.pool(), &name).await?);
    }
    let Some(from) = positions.iter().min().copied() else {
        return Ok(0);
    };
    let (sender, mut batches) = mpsc::channel::<Result<Batch, ProjectionError>>(2);
    let reader_store = store.clone();
    let reader = tokio::spawn(async move {
        let mut from = from;
        loop {
            let read = read_decoded(&reader_store, from, REBUILD_BATCH).await;
            let batch = match read {
                Ok(batch) if batch.is_empty() => return,
                Ok(batch) => batch,
                Err(err) => {
                    let _ = sender.send(Err(err)).await;
                    return;
                }
            };
            if let Some((last, _)) = batch.last() {
                from = last.checkpoint();
            }
            if sender.send(Ok(Arc::new(batch))).await.is_err() {
                return;
            }
        }
    });
    let mut applied = 0u64;
    while let Some(batch) = batches.recv().await {
        let batch = batch?;
        // PostgreSQL applies the projectors concurrently; SQLite has one writer (concurrent
        // transactions would only queue in its busy handler, sleeping), so one at a time.
        let concurrent = store.backend() == Backend::Postgres;
        let mut tasks = tokio::task::JoinSet::new();
        for (index, projector) in projectors.iter().enumerate() {
            // Each projector only takes what lies after its own checkpoint.
            let after = positions[index];
            let skip = batch.partition_point(|(stored, _)| stored.checkpoint() <= after);
            if skip == batch.len() {
                continue;
            }
            counts[index] += (batch.len() - skip) as u64;
            let job =
                apply_rebuild_batch(store.clone(), projector.clone(), batch.clone(), skip, after);
            if concurrent {
                tasks.spawn(async move { Ok::<_, ProjectionError>((index, job.await?)) });
            } else {
                apply_time[index] += job.await?;
            }
        }
        while let Some(joined) = tasks.join_next().await {
            let (index, took) = joined
                .map_err(|e| ProjectionError::Rebuild(format!("rebuild task failed: {e}")))??;
            apply_time[index] += took;
        }
        if let Some((last, _)) = batch.last() {
            positions
                .iter_mut()
                .for_each(|p| *p = (*p).max(last.checkpoint()));
            report(counts, last.position);
        }
        applied += batch.len() as u64;
    }
    reader
        .await
        .map_err(|e| ProjectionError::Rebuild(format!("rebuild reader failed: {e}")))?;
    Ok(applied)
}

/// Applies `batch[skip..]` to `projector`'s fresh tables; returns the time it took.
async fn apply_rebuild_batch(
    store: EventStore,
    projector: Arc<dyn Projector>,
    batch: Batch,
    skip: usize,
    after: Checkpoint,
) -> Result<Duration, ProjectionError> {
    let started = Instant::now();
    let name = rebuild_checkpoint_name(projector.as_ref());
    let events = &batch[skip..];
    if !apply_batch(
        &store,
        projector.as_ref(),
        Tables::REBUILD,
        &name,
        after,
        events,
    )
    .await?
    {
        return Err(ProjectionError::Rebuild(format!(
            "rebuild checkpoint {name} moved under the rebuild; is another rebuild running?"
        )));
    }
    Ok(started.elapsed())
}

/// Empty copies of `projector`'s live tables under `tables`' names, and checkpoint
/// `checkpoint_name` at the start. With `defer_indexes` (PostgreSQL) the copies have only
/// their unique indexes until [`create_deferred_indexes`].
pub(crate) async fn prepare_fresh_tables(
    store: &EventStore,
    projector: &dyn Projector,
    tables: Tables,
    checkpoint_name: &str,
    defer_indexes: bool,
) -> Result<(), ProjectionError> {
    let mut tx = store.backend().begin_write(store.write_pool()).await?;
    checkpoint::reset(&mut tx, checkpoint_name).await?;
    for table in projector.tables() {
        let fresh = tables.name(table);
        tx.execute(format!("DROP TABLE IF EXISTS {fresh}").as_str())
            .await?;
        match store.backend() {
            Backend::Postgres => {
                tx.execute(format!("CREATE TABLE {fresh} (LIKE {table} INCLUDING ALL)").as_str())
                    .await?;
                // Upserts need the unique indexes; the others are built once at the end,
                // which is far cheaper than maintaining them row by row (GIN above all).
                let deferred = if defer_indexes {
                    secondary_indexes(&mut tx, &fresh).await?
                } else {
                    Vec::new()
                };
                for index in deferred {
                    tx.execute(format!("DROP INDEX {}", index.name).as_str())
                        .await?;
                }
            }
            Backend::Sqlite => copy_sqlite_schema(&mut tx, table, &fresh, tables).await?,
        }
    }
    tx.commit().await?;
    Ok(())
}

/// A non-unique index of a table (PostgreSQL).
struct SecondaryIndex {
    name: String,
    /// `USING method (columns) ...`: the definition after the table name.
    using: String,
}

async fn secondary_indexes(
    tx: &mut Transaction<'static, Any>,
    table: &str,
) -> Result<Vec<SecondaryIndex>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT c.relname::text, pg_get_indexdef(i.indexrelid) \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = to_regclass($1) AND NOT i.indisunique ORDER BY c.relname",
    )
    .bind(table.to_string())
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|row| {
            let name: String = row.try_get(0)?;
            let def: String = row.try_get(1)?;
            let using = def
                .find(" USING ")
                .map(|at| def[at + 1..].to_string())
                .ok_or_else(|| {
                    ProjectionError::Rebuild(format!("unexpected index definition: {def}"))
                })?;
            Ok(SecondaryIndex { name, using })
        })
        .collect()
}

/// Gives the fresh tables the live tables' non-unique indexes (PostgreSQL; SQLite's fresh
/// tables keep every index from the start).
async fn create_deferred_indexes(
    store: &EventStore,
    projector: &dyn Projector,
) -> Result<(), ProjectionError> {
    if store.backend() != Backend::Postgres {
        return Ok(());
    }
    let mut tx = store.backend().begin_write(store.write_pool()).await?;
    for table in projector.tables() {
        let fresh = Tables::REBUILD.name(table);
        let present = secondary_indexes(&mut tx, &fresh).await?;
        for index in secondary_indexes(&mut tx, table).await? {
            if present.iter().any(|p| p.using == index.using) {
                continue;
            }
            // Unnamed: PostgreSQL picks a free name from the table and columns.
            tx.execute(format!("CREATE INDEX ON {fresh} {}", index.using).as_str())
                .await?;
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
    tables: Tables,
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
            // Index names are global: a rebuild alternates a suffix so live and fresh never
            // collide; other table sets name theirs after the set.
            let base = name.strip_suffix("__b").unwrap_or(&name);
            let new_name = if tables == Tables::REBUILD {
                if base == name {
                    format!("{name}__b")
                } else {
                    base.to_string()
                }
            } else {
                tables.name(base)
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
    let mut tx = store.backend().begin_write(store.write_pool()).await?;
    let done = checkpoint::load(&mut *tx, name).await?;
    // The live checkpoint first: its row lock waits for a live batch in flight (here or in
    // another process) and makes any later one see it is stale, before a table is touched.
    checkpoint::save(&mut tx, projector.name(), done).await?;
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
