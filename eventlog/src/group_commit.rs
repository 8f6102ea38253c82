//! Group commit on PostgreSQL: appends to different streams that arrive while earlier ones
//! are being written share one statement, so one round trip and one commit (one WAL flush)
//! carry them all.
//!
//! Why: under load every webhook delivery is one small append, and PostgreSQL spends most of
//! its time per statement (wake-ups, context switches, the commit), not per row. At most
//! [`WRITERS`] statements run at once; appends arriving meanwhile queue and go out together in
//! the next one. With a writer slot free an append leads a statement on its own task, but
//! first lets the runtime's other ready tasks run (a `yield_now`, again while that brings
//! followers): under a flood some of them are about to append and join it, while on a quiet
//! runtime nothing else is ready and it goes at once. Appends that arrive while a leader
//! gathers wait for its statement rather than lead one of their own.
//!
//! Each append keeps its own guarantees: the batch is one atomic statement, and if it fails
//! for any reason (a stream conflict, a reused idempotency key, a lost connection) every
//! append in it is written again on its own, so each gets exactly the answer it would have
//! had alone. Two appends to the same stream never share a statement.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::{AnyPool, Row};
use tokio::sync::oneshot;

use crate::backend::Backend;
use crate::event::{Append, AppendResult};
use crate::side::SideRow;
use crate::store::{classify, insert_sql, COLUMNS};
use crate::{now_ms, StoreError};

/// Statements in flight at once (each holds one pooled connection while it runs).
const WRITERS: usize = 4;
/// At most this many appends, and about this many event rows, go into one statement.
const MAX_APPENDS: usize = 64;
const MAX_ROWS: usize = 500;
/// A leader lets the ready tasks run at most this many times while its batch keeps growing.
const GATHER_ROUNDS: usize = 4;

/// One event's columns, serialized once by the caller (off the writer tasks).
#[derive(Debug, Serialize)]
pub(crate) struct PreparedEvent {
    pub event_type: String,
    pub event_version: i64,
    pub payload: Box<RawValue>,
    pub event_id: String,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub actor: String,
    pub tenant_id: Option<String>,
    pub recorded_at: i64,
    pub metadata: Box<RawValue>,
}

/// An [`Append`] with its events serialized, ready for either backend's INSERT.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub expected_version: i64,
    pub events: Vec<PreparedEvent>,
    /// A row of another table committed with these events ([`crate::side`]).
    pub side: Option<Arc<SideRow>>,
}

impl Prepared {
    pub fn new(append: &Append) -> Result<Self, StoreError> {
        let recorded_at = now_ms();
        let events = append
            .events
            .iter()
            .enumerate()
            .map(|(index, event)| {
                let meta = &event.metadata;
                let extras =
                    serde_json::json!({ "received_at": meta.received_at, "extra": meta.extra });
                Ok(PreparedEvent {
                    event_type: event.event_type.clone(),
                    event_version: i64::from(event.event_version),
                    payload: RawValue::from_string(crate::json::to_text(&event.payload)?)?,
                    // Keyed: the id derives from the key (how a replay is recognised).
                    event_id: match &append.idempotency_key {
                        Some(key) => crate::event::keyed_event_id(key, index).to_string(),
                        None => meta.event_id.to_string(),
                    },
                    correlation_id: meta.correlation_id.to_string(),
                    causation_id: meta.causation_id.map(|id| id.to_string()),
                    actor: meta.actor.clone(),
                    tenant_id: meta.tenant_id.clone(),
                    recorded_at,
                    metadata: RawValue::from_string(crate::json::to_text(&extras)?)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Self {
            aggregate_type: append.aggregate_type.clone(),
            aggregate_id: append.aggregate_id.clone(),
            expected_version: append.expected_version,
            events,
            side: crate::side::offered(),
        })
    }

    pub fn version_after(&self) -> i64 {
        self.expected_version + self.events.len() as i64
    }

    fn stream(&self) -> (&str, &str) {
        (&self.aggregate_type, &self.aggregate_id)
    }
}

struct Pending {
    append: Prepared,
    reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

#[derive(Default)]
struct Queue {
    /// Statements being written right now.
    in_flight: usize,
    /// Leaders holding a slot while they let other ready tasks catch up with them.
    gathering: usize,
    waiting: VecDeque<Pending>,
}

impl Queue {
    /// Takes the next batch off the queue (up to the limits), after `first` when given.
    fn batch(&mut self, first: Vec<Pending>) -> Vec<Pending> {
        let mut batch = first;
        let mut rows: usize = batch.iter().map(|p| p.append.events.len()).sum();
        while batch.len() < MAX_APPENDS && rows < MAX_ROWS {
            let Some(next) = self.waiting.pop_front() else {
                break;
            };
            rows += next.append.events.len();
            batch.push(next);
        }
        batch
    }
}

/// Leader/follower group commit. An append that finds a writer slot free writes at once on
/// its own task, taking along whatever has queued; otherwise it queues and waits for the
/// next statement. Appends never hop to another task unless they had to wait anyway (a
/// cross-thread wake-up costs more than the statement on a quiet machine).
#[derive(Clone)]
pub(crate) struct GroupCommit {
    writer: Writer,
    queue: Arc<Mutex<Queue>>,
}

/// What group commit has done since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Statements written, alone or shared.
    pub statements: u64,
    /// Appends written (one per caller).
    pub appends: u64,
    /// Statements that carried more than one append.
    pub shared_statements: u64,
    /// Shared statements that failed and whose appends were written again alone.
    pub regrouped: u64,
}

#[derive(Default)]
struct Counters {
    statements: AtomicU64,
    appends: AtomicU64,
    shared_statements: AtomicU64,
    regrouped: AtomicU64,
}

/// Writes batches; cheap to clone onto a task.
#[derive(Clone)]
struct Writer {
    pool: AnyPool,
    counters: Arc<Counters>,
}

impl GroupCommit {
    pub fn new(pool: AnyPool) -> Self {
        Self {
            writer: Writer {
                pool,
                counters: Arc::default(),
            },
            queue: Arc::default(),
        }
    }

    pub fn stats(&self) -> GroupCommitStats {
        let c = &self.writer.counters;
        GroupCommitStats {
            statements: c.statements.load(Ordering::Relaxed),
            appends: c.appends.load(Ordering::Relaxed),
            shared_statements: c.shared_statements.load(Ordering::Relaxed),
            regrouped: c.regrouped.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends through the next statement; answers once it has committed.
    pub async fn append(&self, append: Prepared) -> Result<AppendResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        let mine = Pending { append, reply };
        let leader = {
            let mut queue = self.lock();
            if queue.in_flight >= WRITERS || queue.gathering > 0 {
                queue.waiting.push_back(mine);
                None
            } else {
                queue.in_flight += 1;
                queue.gathering += 1;
                Some(mine)
            }
        };
        if let Some(mine) = leader {
            let _slot = Slot(self);
            // Let the tasks that are ready run first: under a flood some of them are about
            // to append, and they join this statement instead of paying for their own. On a
            // quiet runtime nothing else is ready and this returns at once.
            let batch = {
                let gathering = Gathering(self);
                let mut joined = 0;
                for _ in 0..GATHER_ROUNDS {
                    tokio::task::yield_now().await;
                    let now = self.lock().waiting.len();
                    if now == joined {
                        break;
                    }
                    joined = now;
                }
                gathering.take(mine)
            };
            if batch.len() == 1 {
                self.writer.write(batch).await;
            } else {
                // Others' appends ride along: their statement must not die with this
                // request if its client goes away, so it runs on a task of its own.
                let writer = self.writer.clone();
                let _ = tokio::spawn(async move { writer.write(batch).await }).await;
            }
        }
        answer
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?
    }

    /// Writes a side row with no events, durably, in the next statement: under load it
    /// shares another's commit instead of paying for one of its own.
    pub async fn write_side(&self, row: SideRow) -> Result<(), StoreError> {
        let alone = Prepared {
            aggregate_type: String::new(),
            aggregate_id: String::new(),
            expected_version: 0,
            events: Vec::new(),
            side: Some(Arc::new(row)),
        };
        self.append(alone).await.map(|_| ())
    }

    /// After a statement: the queue that built up meanwhile goes out on a task of its own
    /// (so the leader answers now), or the writer slot is given back.
    fn hand_on(&self) {
        let mut queue = self.lock();
        // Outside a runtime (a leader dropped while its runtime shuts down) nothing can be
        // spawned: the waiting appends are dropped and their callers get an error.
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !queue.waiting.is_empty() => runtime,
            _ => {
                queue.in_flight -= 1;
                queue.waiting.clear();
                return;
            }
        };
        let batch = queue.batch(Vec::new());
        drop(queue);
        let this = self.clone();
        runtime.spawn(async move {
            this.writer.write(batch).await;
            this.hand_on();
        });
    }
}

/// A leader gathering followers; ends when it takes its batch or is cancelled.
struct Gathering<'a>(&'a GroupCommit);

impl Gathering<'_> {
    /// Ends the gathering and takes the batch, `mine` first, under one lock.
    fn take(self, mine: Pending) -> Vec<Pending> {
        let mut queue = self.0.lock();
        queue.gathering -= 1;
        let batch = queue.batch(vec![mine]);
        drop(queue);
        std::mem::forget(self);
        batch
    }
}

impl Drop for Gathering<'_> {
    fn drop(&mut self) {
        self.0.lock().gathering -= 1;
    }
}

/// A writer slot held by a leader; handed on when it is done or cancelled.
struct Slot<'a>(&'a GroupCommit);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.hand_on();
    }
}

impl Writer {
    /// Writes a batch: the first append of each stream together, any later ones for the same
    /// stream afterwards on their own (they would conflict inside one statement).
    async fn write(&self, batch: Vec<Pending>) {
        let mut seen = HashSet::new();
        let (group, later): (Vec<Pending>, Vec<Pending>) = batch.into_iter().partition(|p| {
            let (t, id) = p.append.stream();
            p.append.events.is_empty() || seen.insert((t.to_string(), id.to_string()))
        });
        metrics::histogram!("eventlog_group_commit_batch_size").record(group.len() as f64);
        if group.len() == 1 {
            self.write_alone(group).await;
        } else {
            let count = |c: &AtomicU64, n: usize| c.fetch_add(n as u64, Ordering::Relaxed);
            count(&self.counters.statements, 1);
            count(&self.counters.shared_statements, 1);
            let appends: Vec<&Prepared> = group.iter().map(|p| &p.append).collect();
            match append_many(&self.pool, &appends).await {
                Ok(results) => {
                    count(&self.counters.appends, group.len());
                    for (pending, result) in group.into_iter().zip(results) {
                        let _ = pending.reply.send(Ok(result));
                    }
                }
                Err(err) => {
                    count(&self.counters.regrouped, 1);
                    tracing::debug!(error = %err, appends = group.len(), "shared append failed; writing each alone");
                    self.write_alone(group).await;
                }
            }
        }
        self.write_alone(later).await;
    }

    async fn write_alone(&self, appends: Vec<Pending>) {
        for pending in appends {
            self.counters.statements.fetch_add(1, Ordering::Relaxed);
            self.counters.appends.fetch_add(1, Ordering::Relaxed);
            let result = append_one(&self.pool, &pending.append).await;
            let _ = pending.reply.send(result);
        }
    }
}

/// One append in ONE autocommit statement (data-modifying CTEs): the events and the
/// idempotency record in one round trip. The unique indexes decide conflicts and reused keys.
pub(crate) async fn append_one(
    pool: &AnyPool,
    append: &Prepared,
) -> Result<AppendResult, StoreError> {
    if append.events.is_empty() {
        // A side row written on its own ([`GroupCommit::write_side`]).
        if let Some(side) = &append.side {
            side.bind(sqlx::query(&side.sql(1, 1)))
                .execute(pool)
                .await?;
        }
        return Ok(nothing_appended(append));
    }
    let rows = append.events.len();
    let version = append.version_after();
    let insert = insert_sql(Backend::Postgres, rows);
    let next = rows * COLUMNS + 1;
    let mut ctes = vec![format!("ins AS ({insert})")];
    if let Some(side) = &append.side {
        // A data-modifying CTE runs whether or not the query reads it.
        ctes.push(format!("side AS ({})", side.sql(1, next)));
    }
    let sql = if ctes.len() == 1 {
        insert
    } else {
        format!("WITH {} SELECT global_position FROM ins", ctes.join(", "))
    };
    let mut query = crate::store::bind_events(
        sqlx::query(&sql),
        append,
        &append.events,
        append.expected_version,
    );
    if let Some(side) = &append.side {
        query = side.bind(query);
    }
    let returned = query
        .fetch_all(pool)
        .await
        .map_err(|e| classify(e, append))?;
    let mut positions = returned
        .iter()
        .map(|row| row.try_get::<i64, _>(0))
        .collect::<Result<Vec<i64>, _>>()?;
    positions.sort_unstable();
    Ok(AppendResult {
        first_position: positions.first().copied().unwrap_or_default(),
        last_position: positions.last().copied().unwrap_or_default(),
        version,
        duplicate: false,
        event_count: rows as i64,
    })
}

/// One row of the batch's JSON: an event with its stream, sequence and place in the batch.
#[derive(Serialize)]
struct BatchRow<'a> {
    n: usize,
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    sequence: i64,
    #[serde(flatten)]
    event: &'a PreparedEvent,
}

/// Every event of the batch travels as one JSON parameter, so the statement text is the same
/// for any batch (prepared once per connection) and its size is bound by nothing but the
/// batch limits. Rows are inserted in batch order, so a stream's events get increasing
/// positions in sequence order.
const APPEND_MANY: &str = "\
WITH batch AS (\
    SELECT * FROM json_to_recordset($1::json) AS r(n bigint, aggregate_type text, \
    aggregate_id text, sequence bigint, event_type text, event_version integer, payload jsonb, \
    event_id text, correlation_id text, causation_id text, actor text, tenant_id text, \
    recorded_at bigint, metadata jsonb)\
), ins AS (\
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
    payload, event_id, correlation_id, causation_id, actor, tenant_id, recorded_at, metadata) \
    SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, \
    event_id, correlation_id, causation_id, actor, tenant_id, recorded_at, metadata \
    FROM batch ORDER BY n \
    RETURNING global_position, aggregate_type, aggregate_id\
)";
const APPEND_MANY_ANSWER: &str = " SELECT aggregate_type, aggregate_id, MIN(global_position), \
MAX(global_position) FROM ins GROUP BY aggregate_type, aggregate_id";

/// [`APPEND_MANY`] with one more CTE per group of side rows the batch carries, each reading
/// them from one more JSON parameter (so the text depends on the shapes, and on the number
/// of updates, not on the number of inserted rows).
fn append_many_sql(sides: &[Vec<&SideRow>]) -> String {
    let mut sql = String::from(APPEND_MANY);
    for (i, rows) in sides.iter().enumerate() {
        sql.push_str(&format!(", side{i} AS ({})", rows[0].json_sql(2 + i)));
    }
    sql.push_str(APPEND_MANY_ANSWER);
    sql
}

/// The batch's side rows, grouped by shape (one INSERT each); an update is a group of its own.
fn side_rows<'a>(appends: &[&'a Prepared]) -> Vec<Vec<&'a SideRow>> {
    let mut shapes: Vec<Vec<&SideRow>> = Vec::new();
    for side in appends.iter().filter_map(|a| a.side.as_deref()) {
        let shared = shapes
            .iter_mut()
            .find(|rows| !side.one_per_statement() && rows[0].same_shape(side));
        match shared {
            Some(rows) => rows.push(side),
            None => shapes.push(vec![side]),
        }
    }
    shapes
}

/// One side CTE's JSON parameter: an array of its rows, or the one row of an update.
fn side_json(rows: &[&SideRow]) -> Result<String, StoreError> {
    match rows {
        [row] if row.one_per_statement() => Ok(crate::json::to_text(&row.to_json())?),
        rows => {
            let json: Vec<serde_json::Value> = rows.iter().map(|row| row.to_json()).collect();
            Ok(crate::json::to_text(&json)?)
        }
    }
}

/// Appends to distinct streams in one statement; results in the order of `appends`.
async fn append_many(
    pool: &AnyPool,
    appends: &[&Prepared],
) -> Result<Vec<AppendResult>, StoreError> {
    let mut rows = Vec::new();
    for append in appends {
        for (i, event) in append.events.iter().enumerate() {
            rows.push(BatchRow {
                n: rows.len(),
                aggregate_type: &append.aggregate_type,
                aggregate_id: &append.aggregate_id,
                sequence: append.expected_version + 1 + i as i64,
                event,
            });
        }
    }
    let sides = side_rows(appends);
    let sql = append_many_sql(&sides);
    let mut query = sqlx::query(&sql).bind(crate::json::to_text(&rows)?);
    for rows in &sides {
        query = query.bind(side_json(rows)?);
    }
    let returned = query.fetch_all(pool).await?;
    let mut positions: HashMap<(String, String), (i64, i64)> = HashMap::new();
    for row in &returned {
        positions.insert(
            (row.try_get(0)?, row.try_get(1)?),
            (row.try_get(2)?, row.try_get(3)?),
        );
    }
    appends
        .iter()
        .map(|append| {
            if append.events.is_empty() {
                return Ok(nothing_appended(append));
            }
            let stream = (append.aggregate_type.clone(), append.aggregate_id.clone());
            let (first, last) = positions.get(&stream).copied().ok_or_else(|| {
                StoreError::Database(sqlx::Error::Protocol(format!(
                    "group append returned no positions for {}/{}",
                    stream.0, stream.1
                )))
            })?;
            Ok(AppendResult {
                first_position: first,
                last_position: last,
                version: append.version_after(),
                duplicate: false,
                event_count: append.events.len() as i64,
            })
        })
        .collect()
}

/// The answer to an append of no events (a side row alone).
fn nothing_appended(append: &Prepared) -> AppendResult {
    AppendResult {
        first_position: 0,
        last_position: 0,
        version: append.expected_version,
        duplicate: false,
        event_count: 0,
    }
}
