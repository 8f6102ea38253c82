//! [`EventStore`]: the append-only log over PostgreSQL or SQLite.
//!
//! Why not postgres-es / sqlite-es as shipped: they bind sequences as i32, insert one event per
//! round trip, have no global commit order, and their replay stream can end early on a database
//! error yet return Ok. This store keeps their table shape (aggregate_type, aggregate_id,
//! sequence, event_type, event_version, payload, metadata) and fixes those four points.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::backend::{self, Backend};
use crate::error::{unique_violation, UniqueViolation};
use crate::event::{Append, AppendResult, Checkpoint, EventMetadata, StoredEvent};
use crate::group_commit::{GroupCommit, GroupCommitStats, Prepared, PreparedEvent};
use crate::side::SideRow;
use crate::snapshot;
use crate::wake::Wake;
use crate::StoreError;

/// Columns of one event row; at most this many rows go into one INSERT statement.
pub(crate) const COLUMNS: usize = 13;
const MAX_ROWS_PER_INSERT: usize = 500;
/// SQLite prepares a statement in O(parameters²) (it looks each `$N` up among the names seen):
/// keep its multi-row INSERTs below ~1,000 parameters.
const MAX_ROWS_PER_INSERT_SQLITE: usize = 70;

#[derive(Clone)]
pub struct EventStore {
    pool: AnyPool,
    /// Write transactions (one connection on SQLite; see [`backend::Pools`]).
    writes: AnyPool,
    relaxed: AnyPool,
    backend: Backend,
    wake: Wake,
    /// PostgreSQL: concurrent appends to different streams share statements.
    group: Option<GroupCommit>,
    /// Which consumers this process leads (advisory locks on one session).
    leadership: std::sync::Arc<crate::leadership::Leadership>,
}

/// Event ids looked up per statement when finding an earlier keyed append.
const FIND_CHUNK: usize = 64;

impl EventStore {
    /// Connects and applies migrations. `url` is `postgres://...` or `sqlite://path`.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let (
            backend::Pools {
                pool,
                writes,
                relaxed,
            },
            backend,
        ) = backend::connect(url, max_connections).await?;
        backend::migrate(&pool, backend).await?;
        let wake = Wake::new();
        if backend == Backend::Postgres {
            wake.listen_postgres(url.to_string());
            wake.publish_postgres(pool.clone());
        }
        let group = (backend == Backend::Postgres).then(|| GroupCommit::new(pool.clone()));
        let leadership =
            std::sync::Arc::new(crate::leadership::Leadership::new(pool.clone(), backend));
        Ok(Self {
            pool,
            writes,
            relaxed,
            backend,
            wake,
            group,
            leadership,
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for write transactions and other writes: on SQLite a single connection, so
    /// writers queue in order instead of sleeping in SQLite's busy handler.
    pub fn write_pool(&self) -> &AnyPool {
        &self.writes
    }

    /// The pool for single writes the log stands behind (indexes over streams, operators'
    /// records), committed without waiting for the disk: on PostgreSQL its connections run
    /// with `synchronous_commit = off`, so such a write is one autocommit round trip instead
    /// of a transaction of three (`BEGIN; SET LOCAL …`, the write, `COMMIT`); a crash can
    /// lose its last few milliseconds. On SQLite it is the write pool.
    pub fn relaxed_pool(&self) -> &AnyPool {
        &self.relaxed
    }

    pub fn leadership(&self) -> &crate::leadership::Leadership {
        &self.leadership
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn wake(&self) -> &Wake {
        &self.wake
    }

    /// Group-commit counters (PostgreSQL; `None` on SQLite, which writes one append at a time).
    pub fn group_commit_stats(&self) -> Option<GroupCommitStats> {
        self.group.as_ref().map(GroupCommit::stats)
    }

    /// Appends `append.events` to one stream in one transaction. Fails with
    /// [`StoreError::Conflict`] when the stream is no longer at `expected_version`; returns the
    /// first result again (with `duplicate: true`) when the idempotency key was already used.
    pub async fn append(&self, append: Append) -> Result<AppendResult, StoreError> {
        // A used idempotency key is found by the unique index on the way in (see the error
        // path below), not by a lookup before every append.
        if append.events.is_empty() {
            if let Some(key) = &append.idempotency_key {
                if let Some(previous) = self.find_append(key).await? {
                    return Ok(previous);
                }
            }
            return Ok(AppendResult {
                first_position: 0,
                last_position: 0,
                version: append.expected_version,
                duplicate: false,
                event_count: 0,
            });
        }
        let prepared = Prepared::new(&append)?;
        let carries_side_row = prepared.side.is_some();
        let key = append.idempotency_key.clone();
        let started = std::time::Instant::now();
        let written = self.try_append(append, prepared).await;
        let took = started.elapsed();
        crate::timing::record(took);
        let outcome = match &written {
            Ok(_) => "committed",
            Err(StoreError::Conflict { .. }) => "conflict",
            Err(_) => "error",
        };
        metrics::histogram!("eventlog_append_seconds", "backend" => self.backend.name(), "outcome" => outcome)
            .record(took.as_secs_f64());
        match written {
            Ok(result) => {
                if carries_side_row {
                    crate::side::written();
                }
                self.wake.committed(result.last_position);
                Ok(result)
            }
            Err(err) => {
                // A concurrent retry of the same command may have won the race: answer with its
                // result rather than a conflict.
                if let Some(key) = &key {
                    if let Some(previous) = self.find_append(key).await? {
                        return Ok(previous);
                    }
                }
                Err(err)
            }
        }
    }

    async fn try_append(
        &self,
        append: Append,
        prepared: Prepared,
    ) -> Result<AppendResult, StoreError> {
        if let Some(group) = &self.group {
            if append.snapshot.is_none() && prepared.events.len() <= MAX_ROWS_PER_INSERT {
                return group.append(prepared).await;
            }
        }
        // A transaction abandoned halfway (the caller's request cancelled) would go back to the
        // pool still open on SQLite, and the next BEGIN on that connection fails. The
        // transaction therefore runs on a task of its own and always finishes.
        let store = self.clone();
        tokio::spawn(async move { store.append_in_transaction(&append, &prepared).await })
            .await
            .map_err(|err| {
                StoreError::Database(sqlx::Error::Protocol(format!("append task failed: {err}")))
            })?
    }

    async fn append_in_transaction(
        &self,
        append: &Append,
        prepared: &Prepared,
    ) -> Result<AppendResult, StoreError> {
        let mut tx = self.backend.begin_write(&self.writes).await?;
        let mut positions: Vec<i64> = Vec::with_capacity(append.events.len());
        let rows_per_insert = match self.backend {
            Backend::Postgres => MAX_ROWS_PER_INSERT,
            Backend::Sqlite => MAX_ROWS_PER_INSERT_SQLITE,
        };
        for (chunk_index, chunk) in prepared.events.chunks(rows_per_insert).enumerate() {
            let sql = insert_sql(self.backend, chunk.len());
            let base = append.expected_version + (chunk_index * rows_per_insert) as i64;
            let query = bind_events(sqlx::query(&sql), prepared, chunk, base);
            let rows = query
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| classify(e, prepared))?;
            for row in rows {
                positions.push(row.try_get::<i64, _>(0)?);
            }
        }
        positions.sort_unstable();
        let first_position = positions.first().copied().unwrap_or_default();
        let last_position = positions.last().copied().unwrap_or_default();
        let version = append.expected_version + append.events.len() as i64;
        if let Some(side) = &prepared.side {
            side.bind(sqlx::query(&side.sql(1, 1)))
                .execute(&mut *tx)
                .await?;
        }
        if let Some(snapshot) = &append.snapshot {
            snapshot::save(
                &mut tx,
                &append.aggregate_type,
                &append.aggregate_id,
                snapshot,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(AppendResult {
            first_position,
            last_position,
            version,
            duplicate: false,
            event_count: append.events.len() as i64,
        })
    }

    /// Writes `row` ([`crate::side`]) on its own, durably: on PostgreSQL it rides the next
    /// group-commit statement (under load, no commit of its own); on SQLite one write
    /// transaction.
    pub async fn write_side(&self, row: SideRow) -> Result<(), StoreError> {
        if let Some(group) = &self.group {
            return group.write_side(row).await;
        }
        let mut tx = self.backend.begin_write(&self.writes).await?;
        row.bind(sqlx::query(&row.sql(1, 1)))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether appends and side rows share commits here (group commit: PostgreSQL).
    pub fn shares_commits(&self) -> bool {
        self.group.is_some()
    }

    /// The result of an earlier append that used `key`, if any: its events, found by the ids
    /// derived from the key ([`crate::event::keyed_event_id`]) through the unique index on
    /// event ids. The first event alone is looked up first (most lookups find nothing: a
    /// command that decided nothing asks too); then the rest, [`FIND_CHUNK`] ids per
    /// statement until a statement finds fewer.
    pub async fn find_append(&self, key: &str) -> Result<Option<AppendResult>, StoreError> {
        let mut found = self.keyed_events(key, 0..1).await?;
        if found.is_empty() {
            return Ok(None);
        }
        for chunk in 0.. {
            let from = 1 + chunk * FIND_CHUNK;
            let more = self.keyed_events(key, from..from + FIND_CHUNK).await?;
            let whole = more.len() == FIND_CHUNK;
            found.extend(more);
            if !whole {
                break;
            }
        }
        let positions = found.iter().map(|(position, _)| *position);
        Ok(Some(AppendResult {
            first_position: positions.clone().min().unwrap_or_default(),
            last_position: positions.max().unwrap_or_default(),
            version: found
                .iter()
                .map(|(_, sequence)| *sequence)
                .max()
                .unwrap_or(0),
            event_count: found.len() as i64,
            duplicate: true,
        }))
    }

    /// (position, sequence) of the events with the keyed ids `indexes` of `key`.
    async fn keyed_events(
        &self,
        key: &str,
        indexes: std::ops::Range<usize>,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let params: Vec<String> = (1..=indexes.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT global_position, sequence FROM events WHERE event_id IN ({})",
            params.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for index in indexes {
            query = query.bind(crate::event::keyed_event_id(key, index).to_string());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// [`select_columns`](Self::select_columns) without the metadata JSON.
    fn light_columns(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => {
                "global_position, transaction_id, aggregate_type, aggregate_id, sequence, \
                 event_type, event_version::bigint, payload::text, event_id, correlation_id, \
                 causation_id, actor, tenant_id, recorded_at"
            }
            Backend::Sqlite => {
                "global_position, transaction_id, aggregate_type, aggregate_id, sequence, \
                 event_type, event_version, payload, event_id, correlation_id, causation_id, \
                 actor, tenant_id, recorded_at"
            }
        }
    }

    pub(crate) fn select_columns(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => {
                "global_position, transaction_id, aggregate_type, aggregate_id, sequence, \
                 event_type, event_version::bigint, payload::text, event_id, correlation_id, \
                 causation_id, actor, tenant_id, recorded_at, metadata::text"
            }
            Backend::Sqlite => {
                "global_position, transaction_id, aggregate_type, aggregate_id, sequence, \
                 event_type, event_version, payload, event_id, correlation_id, causation_id, \
                 actor, tenant_id, recorded_at, metadata"
            }
        }
    }

    /// Events of one stream with a sequence above `after_sequence`, in order.
    pub async fn read_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_sequence: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!(
            "SELECT {} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
             AND sequence > $3 ORDER BY sequence",
            self.select_columns()
        );
        let rows = sqlx::query(&sql)
            .bind(aggregate_type.to_string())
            .bind(aggregate_id.to_string())
            .bind(after_sequence)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// Up to `limit` events of one stream with a sequence above `after_sequence`, in order
    /// (an auditor's page).
    pub async fn read_stream_page(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_sequence: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!(
            "SELECT {} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
             AND sequence > $3 ORDER BY sequence LIMIT $4",
            self.select_columns()
        );
        let rows = sqlx::query(&sql)
            .bind(aggregate_type.to_string())
            .bind(aggregate_id.to_string())
            .bind(after_sequence)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// Up to `limit` events of tenant `tenant` after position `after_position` whose record
    /// time is in `[from_ms, to_ms)` and whose type is one of `event_types`, by position (an
    /// auditor's or a replay's time range).
    pub async fn read_tenant(
        &self,
        tenant: &str,
        event_types: &[&str],
        from_ms: i64,
        to_ms: i64,
        after_position: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if event_types.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (0..event_types.len())
            .map(|i| format!("${}", i + 6))
            .collect();
        let sql = format!(
            "SELECT {} FROM events WHERE tenant_id = $1 AND global_position > $2 \
             AND recorded_at >= $3 AND recorded_at < $4 AND event_type IN ({}) \
             ORDER BY global_position LIMIT $5",
            self.select_columns(),
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(after_position)
            .bind(from_ms)
            .bind(to_ms)
            .bind(limit);
        for event_type in event_types {
            query = query.bind(event_type.to_string());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }

    /// Up to `limit` events after `after`, in commit order. On PostgreSQL only events of
    /// transactions older than every running transaction are returned, so an event can never
    /// later appear before a checkpoint a reader already stored.
    pub async fn read_all(
        &self,
        after: Checkpoint,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = self.read_rows(after, limit, self.select_columns()).await?;
        rows.iter().map(decode).collect()
    }

    /// Rows after `after` in commit order (on PostgreSQL only below the oldest transaction
    /// still open, so a later commit can never appear behind a reader).
    async fn read_rows(
        &self,
        after: Checkpoint,
        limit: i64,
        columns: &str,
    ) -> Result<Vec<AnyRow>, StoreError> {
        Ok(match self.backend {
            Backend::Postgres => {
                // One round trip: the function pins the ordered index scan (see migration
                // 0010); the outer ORDER BY keeps the order a guarantee, not an accident.
                let sql = format!(
                    "SELECT {columns} FROM callflex_events_after($1, $2, $3) \
                     ORDER BY transaction_id, global_position"
                );
                sqlx::query(&sql)
                    .bind(after.transaction_id)
                    .bind(after.position)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            Backend::Sqlite => {
                let sql = format!(
                    "SELECT {columns} FROM events WHERE global_position > $1 \
                     ORDER BY global_position LIMIT $2"
                );
                sqlx::query(&sql)
                    .bind(after.position)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        })
    }

    /// Like [`read_all`](Self::read_all) for consumers that deserialize payloads straight
    /// into their own types (projectors): `decode` gets each event (its `payload` left `Null`,
    /// its metadata without `received_at`/`extra`) and the payload's JSON text. Building a JSON
    /// tree per event first costs more than the typed parse itself.
    pub async fn read_all_with<T, E>(
        &self,
        after: Checkpoint,
        limit: i64,
        decode: impl Fn(&StoredEvent, &str) -> Result<T, E>,
    ) -> Result<Vec<(StoredEvent, T)>, E>
    where
        E: From<StoreError>,
    {
        let rows = self
            .read_rows(after, limit, self.light_columns())
            .await
            .map_err(E::from)?;
        rows.iter()
            .map(|row| {
                let (stored, payload) = decode_light(row).map_err(E::from)?;
                let decoded = decode(&stored, &payload)?;
                Ok((stored, decoded))
            })
            .collect()
    }

    /// The highest position written so far (0 for an empty log).
    pub async fn head(&self) -> Result<i64, StoreError> {
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(global_position), 0) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(head)
    }

    /// The commit-order checkpoint of the event at `position`, to compare with a consumer's.
    pub async fn checkpoint_of(&self, position: i64) -> Result<Option<Checkpoint>, StoreError> {
        let row = sqlx::query(
            "SELECT transaction_id, global_position FROM events WHERE global_position = $1",
        )
        .bind(position)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Checkpoint {
                transaction_id: row.try_get(0)?,
                position: row.try_get(1)?,
            })
        })
        .transpose()
    }

    /// Number of events in the log at or before `position` (used for lag reports).
    pub async fn count_after(&self, after: Checkpoint) -> Result<i64, StoreError> {
        let count: i64 = match self.backend {
            Backend::Postgres => sqlx::query_scalar(
                "SELECT COUNT(*) FROM events WHERE (transaction_id, global_position) > ($1, $2)",
            )
            .bind(after.transaction_id)
            .bind(after.position)
            .fetch_one(&self.pool)
            .await?,
            Backend::Sqlite => {
                sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE global_position > $1")
                    .bind(after.position)
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        Ok(count)
    }
}

/// A multi-row INSERT of `rows` events, returning their positions.
pub(crate) fn insert_sql(backend: Backend, rows: usize) -> String {
    let (json, ret) = match backend {
        Backend::Postgres => ("::jsonb", "global_position"),
        Backend::Sqlite => ("", "global_position"),
    };
    let mut sql = String::from(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
         event_version, payload, event_id, correlation_id, causation_id, actor, tenant_id, \
         recorded_at, metadata) VALUES ",
    );
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        let base = row * COLUMNS;
        let p = |i: usize| format!("${}", base + i);
        sql.push_str(&format!(
            "({}, {}, {}, {}, {}, {}{json}, {}, {}, {}, {}, {}, {}, {}{json})",
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
            p(6),
            p(7),
            p(8),
            p(9),
            p(10),
            p(11),
            p(12),
            p(13)
        ));
    }
    sql.push_str(" RETURNING ");
    sql.push_str(ret);
    sql
}

/// Maps a failed append to a conflict or duplicate when a unique index says so.
pub(crate) fn classify(err: sqlx::Error, append: &Prepared) -> StoreError {
    match unique_violation(&err) {
        Some(UniqueViolation::StreamSequence) => StoreError::Conflict {
            aggregate_type: append.aggregate_type.clone(),
            aggregate_id: append.aggregate_id.clone(),
            expected: append.expected_version,
        },
        Some(UniqueViolation::EventId) => StoreError::Duplicate("event id".into()),
        None => StoreError::Database(err),
    }
}

/// Binds the columns of `events` (the stream's events after sequence `base`) in the order
/// [`insert_sql`] lists them.
pub(crate) fn bind_events<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    append: &'q Prepared,
    events: &'q [PreparedEvent],
    base: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for (i, event) in events.iter().enumerate() {
        query = query
            .bind(append.aggregate_type.as_str())
            .bind(append.aggregate_id.as_str())
            .bind(base + 1 + i as i64)
            .bind(event.event_type.as_str())
            .bind(event.event_version)
            .bind(event.payload.get())
            .bind(event.event_id.as_str())
            .bind(event.correlation_id.as_str())
            .bind(event.causation_id.as_deref())
            .bind(event.actor.as_str())
            .bind(event.tenant_id.as_deref())
            .bind(event.recorded_at)
            .bind(event.metadata.get());
    }
    query
}

pub(crate) fn decode(row: &AnyRow) -> Result<StoredEvent, StoreError> {
    let (mut event, payload) = decode_light(row)?;
    event.payload = serde_json::from_str(&payload)?;
    let metadata_json: String = row.try_get(14)?;
    let extras: serde_json::Value = serde_json::from_str(&metadata_json)?;
    event.metadata.received_at = extras
        .get("received_at")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    event.metadata.extra = extras
        .get("extra")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    Ok(event)
}

/// Every column but the payload (returned as text) and the metadata JSON.
fn decode_light(row: &AnyRow) -> Result<(StoredEvent, String), StoreError> {
    let payload: String = row.try_get(7)?;
    let parse_uuid = |s: String| uuid::Uuid::parse_str(&s).unwrap_or_default();
    let event_version: i64 = row.try_get(6)?;
    let event = StoredEvent {
        position: row.try_get(0)?,
        transaction_id: row.try_get(1)?,
        aggregate_type: row.try_get(2)?,
        aggregate_id: row.try_get(3)?,
        sequence: row.try_get(4)?,
        event_type: row.try_get(5)?,
        event_version: i32::try_from(event_version).unwrap_or(1),
        payload: serde_json::Value::Null,
        metadata: EventMetadata {
            event_id: parse_uuid(row.try_get(8)?),
            correlation_id: parse_uuid(row.try_get(9)?),
            causation_id: row
                .try_get::<Option<String>, _>(10)?
                .and_then(|s| uuid::Uuid::parse_str(&s).ok()),
            actor: row.try_get(11)?,
            tenant_id: row.try_get(12)?,
            received_at: Default::default(),
            extra: Default::default(),
        },
        recorded_at: row.try_get(13)?,
    };
    Ok((event, payload))
}
