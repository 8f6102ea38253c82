//! `process_work`: each process instance's timer and summary. The instance's progress is its
//! stream in the log; this row only says when its worker next has something to do
//! (`due_at`, NULL once completed) and how it stands, for `/health` and the worker's query.

use aggregates::process::{Due as ProcessDue, Process, StepStatus};
use eventlog::now_ms;
use eventlog::side::{SideRow, SideValue, SideWrite};
use serde_json::Value;
use sqlx::{Any, AnyPool, Row, Transaction};
use uuid::Uuid;

/// An instance to start, as its starter saw it in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    pub subject: String,
    pub organization_id: Option<Uuid>,
    pub input: Value,
    /// Instances of one lane take their first turns in log order (see `due`).
    pub lane: Option<String>,
}

impl Start {
    pub fn new(subject: String, organization_id: Option<Uuid>, input: Value) -> Self {
        Start {
            subject,
            organization_id,
            input,
            lane: None,
        }
    }
}

/// A due instance, as the worker reads it.
#[derive(Debug, Clone)]
pub struct Due {
    pub subject: String,
    pub organization_id: Option<Uuid>,
    pub input: Value,
    pub lane: Option<String>,
    /// The event that started the instance, when it was started from the log.
    pub cause: Option<Cause>,
    /// Not yet run (`pending` or `queued`): its stream is empty (see [`timer_row`]).
    pub fresh: bool,
}

/// How an instance stands after its worker ran it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Started or waiting for a step that can run now.
    Running,
    /// A failed step waits for its retry.
    Retrying,
    Completed,
    /// Completed with steps that gave up.
    Failed,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Running => "running",
            Standing::Retrying => "retrying",
            Standing::Completed => "completed",
            Standing::Failed => "failed",
        }
    }
}

/// The event that started instances: its correlation id and its own id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cause {
    pub correlation_id: Uuid,
    pub event_id: Uuid,
}

/// One instance to start, with the event that started it: `seq` (the event's log position)
/// orders the instance in its lane.
#[derive(Debug, Clone, Copy)]
pub struct Started<'a> {
    pub seq: i64,
    pub cause: Option<Cause>,
    pub start: &'a Start,
}

/// Records instances to start, due now (inside the starter's batch transaction: they commit
/// with its checkpoint), in the order given (log order). An instance of a lane that already
/// has one waiting, or behind an earlier one of the same lane here, is `queued` (not due)
/// behind it. An instance already recorded is left as it is.
pub async fn insert_starts(
    tx: &mut Transaction<'static, Any>,
    kind: &str,
    starts: &[Started<'_>],
) -> Result<(), sqlx::Error> {
    if starts.is_empty() {
        return Ok(());
    }
    if tx.backend_name() == "PostgreSQL" {
        return insert_starts_at_once(tx, kind, starts).await;
    }
    // SQLite has one writer at a time: a worker cannot finish the lane's pending instance
    // between this look and this insert.
    let now = now_ms();
    for Started { seq, cause, start } in starts {
        let waiting = match &start.lane {
            Some(lane) => sqlx::query(
                "SELECT 1 FROM process_work WHERE kind = $1 AND lane = $2 \
                 AND status IN ('pending', 'queued') LIMIT 1",
            )
            .bind(kind.to_string())
            .bind(lane.clone())
            .fetch_optional(&mut **tx)
            .await?
            .is_some(),
            None => false,
        };
        let (status, due_at) = if waiting {
            ("queued", None)
        } else {
            ("pending", Some(now))
        };
        sqlx::query(
            "INSERT INTO process_work (kind, subject, organization_id, input, status, due_at, \
             created_at, updated_at, lane, seq, correlation_id, causation_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11) \
             ON CONFLICT (kind, subject) DO NOTHING",
        )
        .bind(kind.to_string())
        .bind(start.subject.clone())
        .bind(start.organization_id.map(|o| o.to_string()))
        .bind(start.input.to_string())
        .bind(status)
        .bind(due_at)
        .bind(now)
        .bind(start.lane.clone())
        .bind(*seq)
        .bind(cause.map(|c| c.correlation_id.to_string()))
        .bind(cause.map(|c| c.event_id.to_string()))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// [`insert_starts`] in one statement on PostgreSQL (a starter's whole batch: an event
/// delivered to 16 endpoints starts 16 instances, one round trip, not 32). Of several new
/// instances of one lane, only the first can be pending, and none when the lane already has
/// one waiting. (The lanes are probed one by one, `LATERAL … LIMIT 1`, each status by
/// equality so the index finds it: as a semi-join the planner scanned every instance of
/// every lane, 8 ms with a backlog.)
///
/// No row is locked: a starter that locked the lanes' pending rows made every worker
/// finishing one wait for the starter's whole batch (measured: 13 ms per delivery, the
/// webhook backlog's bound). The race it closed, a worker finishing the lane's pending
/// instance while this statement sees it pending (so the new one is queued behind a lane
/// nobody will promote), is closed by the worker with [`promote_lanes`].
async fn insert_starts_at_once(
    tx: &mut Transaction<'static, Any>,
    kind: &str,
    starts: &[Started<'_>],
) -> Result<(), sqlx::Error> {
    let rows: Vec<Value> = starts
        .iter()
        .enumerate()
        .map(|(n, Started { seq, cause, start })| {
            serde_json::json!({
                "n": n,
                "subject": start.subject,
                "organization_id": start.organization_id.map(|o| o.to_string()),
                "input": start.input.to_string(),
                "lane": start.lane,
                "seq": seq,
                "correlation_id": cause.map(|c| c.correlation_id.to_string()),
                "causation_id": cause.map(|c| c.event_id.to_string()),
            })
        })
        .collect();
    sqlx::query(
        "WITH r AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY lane ORDER BY n) AS nth \
             FROM json_to_recordset($1::json) AS r(n bigint, subject text, organization_id text, \
             input text, lane text, seq bigint, correlation_id text, causation_id text)), \
         waiting AS MATERIALIZED (SELECT DISTINCT r.lane FROM r, LATERAL (\
             SELECT 1 FROM process_work w WHERE w.kind = $2 AND w.lane = r.lane \
                 AND w.status = 'pending' \
             UNION ALL SELECT 1 FROM process_work w WHERE w.kind = $2 AND w.lane = r.lane \
                 AND w.status = 'queued' LIMIT 1) x WHERE r.lane IS NOT NULL), \
         s AS (SELECT r.*, (r.lane IS NOT NULL AND (r.nth > 1 OR r.lane IN \
             (SELECT lane FROM waiting))) AS queued FROM r) \
         INSERT INTO process_work (kind, subject, organization_id, input, status, due_at, \
             created_at, updated_at, lane, seq, correlation_id, causation_id) \
         SELECT $2, subject, organization_id, input, \
             CASE WHEN queued THEN 'queued' ELSE 'pending' END, \
             CASE WHEN queued THEN NULL ELSE $3 END, $3, $3, lane, seq, correlation_id, \
             causation_id \
         FROM s ORDER BY n ON CONFLICT (kind, subject) DO NOTHING",
    )
    .bind(eventlog::json::to_text(&rows).map_err(|e| sqlx::Error::Protocol(e.to_string()))?)
    .bind(kind.to_string())
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records instances started outside the log's consumers (a replay someone asked for), each
/// with its lane position, in one transaction.
pub async fn insert_replay(
    store: &eventlog::EventStore,
    kind: &str,
    starts: &[(i64, Start)],
) -> Result<(), sqlx::Error> {
    if starts.is_empty() {
        return Ok(());
    }
    let started: Vec<Started> = starts
        .iter()
        .map(|(seq, start)| Started {
            seq: *seq,
            cause: None,
            start,
        })
        .collect();
    let mut tx = store.write_pool().begin().await?;
    insert_starts(&mut tx, kind, &started).await?;
    tx.commit().await
}

/// Makes a finished instance due again now (its process was reopened).
pub async fn wake(pool: &AnyPool, kind: &str, subject: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE process_work SET status = 'running', due_at = $1, updated_at = $1 \
         WHERE kind = $2 AND subject = $3",
    )
    .bind(now_ms())
    .bind(kind.to_string())
    .bind(subject.to_string())
    .execute(pool)
    .await?;
    Ok(())
}

/// Up to `limit` instances of `kind` due at `now`, earliest first (a lane's queued instances
/// are not due: its worker runs them after its pending one, see [`lane_next`], or
/// [`promote_lanes`] makes the first pending).
pub async fn due(
    pool: &AnyPool,
    kind: &str,
    now: i64,
    limit: i64,
) -> Result<Vec<Due>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {DUE_COLUMNS} FROM process_work \
             WHERE kind = $1 AND due_at IS NOT NULL AND due_at <= $2 \
             ORDER BY due_at, seq LIMIT $3"
    ))
    .bind(kind.to_string())
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(due_of).collect()
}

/// The columns [`due_of`] reads, in its order.
const DUE_COLUMNS: &str =
    "subject, organization_id, input, lane, correlation_id, causation_id, status";

/// A `process_work` row read as [`DUE_COLUMNS`].
fn due_of(row: &sqlx::any::AnyRow) -> Result<Due, sqlx::Error> {
    let organization: Option<String> = row.try_get(1)?;
    let input: String = row.try_get(2)?;
    Ok(Due {
        subject: row.try_get(0)?,
        organization_id: organization.and_then(|o| Uuid::parse_str(&o).ok()),
        input: serde_json::from_str(&input).unwrap_or(Value::Null),
        lane: row.try_get(3)?,
        cause: {
            let ids: (Option<String>, Option<String>) = (row.try_get(4)?, row.try_get(5)?);
            match ids {
                (Some(c), Some(e)) => Uuid::parse_str(&c).ok().zip(Uuid::parse_str(&e).ok()).map(
                    |(correlation_id, event_id)| Cause {
                        correlation_id,
                        event_id,
                    },
                ),
                _ => None,
            }
        },
        fresh: matches!(row.try_get::<String, _>(6)?.as_str(), "pending" | "queued"),
    })
}

/// When the earliest instance of `kind` is due, if any is.
pub async fn next_due(pool: &AnyPool, kind: &str) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query("SELECT MIN(due_at) FROM process_work WHERE kind = $1")
        .bind(kind.to_string())
        .fetch_one(pool)
        .await?;
    row.try_get(0)
}

/// How an instance stands after its worker ran it: its `process_work` timer and summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub standing: Standing,
    pub due_at: Option<i64>,
    pub attempts: i64,
    /// The names of the steps that gave up, comma separated.
    pub failed_steps: Option<String>,
    pub last_error: Option<String>,
}

impl Timer {
    /// The timer of an instance in state `process` at `now`.
    pub fn of(process: &Process, now: chrono::DateTime<chrono::Utc>) -> Timer {
        let failed = process.failed_steps();
        let (standing, due_at) = match process.due(now) {
            ProcessDue::Never if failed.is_empty() => (Standing::Completed, None),
            ProcessDue::Never => (Standing::Failed, None),
            ProcessDue::At(at) => (Standing::Retrying, Some(at.timestamp_millis())),
            ProcessDue::Now => (Standing::Running, Some(now.timestamp_millis())),
        };
        Timer {
            standing,
            due_at,
            attempts: process.steps.iter().map(|s| i64::from(s.attempts)).sum(),
            failed_steps: (!failed.is_empty()).then(|| failed.join(",")),
            last_error: process
                .steps
                .iter()
                .filter(|s| s.status != StepStatus::Succeeded)
                .filter_map(|s| s.last_error.clone())
                .next_back(),
        }
    }
}

/// The instance's timer and summary as a side row of its own append (`eventlog::side`):
/// committed with the events that changed it, so a row still `pending` or `queued` always
/// belongs to an instance whose stream is empty (its worker skips reading it).
pub fn timer_row(kind: &str, subject: &str, timer: &Timer) -> SideRow {
    let text = |t: Option<&str>| SideValue::Text(t.map(str::to_string));
    SideRow {
        table: "process_work",
        columns: &[
            "kind",
            "subject",
            "status",
            "due_at",
            "attempts",
            "failed_steps",
            "last_error",
            "updated_at",
        ],
        values: vec![
            text(Some(kind)),
            text(Some(subject)),
            text(Some(timer.standing.as_str())),
            SideValue::Int(timer.due_at),
            SideValue::Int(Some(timer.attempts)),
            text(timer.failed_steps.as_deref()),
            text(timer.last_error.as_deref()),
            SideValue::Int(Some(now_ms())),
        ],
        write: SideWrite::Update {
            key: &["kind", "subject"],
        },
    }
}

/// Writes the instance's timer and summary when its last append did not carry them.
/// Committed without waiting for the disk (the relaxed pool): the row is an index
/// over the instance's stream, and one lost in a crash is rebuilt from that stream the next
/// time the instance is due (at worst it is due again and its worker finds nothing to do).
pub async fn update(
    store: &eventlog::EventStore,
    kind: &str,
    subject: &str,
    timer: &Timer,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE process_work SET status = $1, due_at = $2, attempts = $3, failed_steps = $4, \
         last_error = $5, updated_at = $6 WHERE kind = $7 AND subject = $8",
    )
    .bind(timer.standing.as_str())
    .bind(timer.due_at)
    .bind(timer.attempts)
    .bind(timer.failed_steps.clone())
    .bind(timer.last_error.clone())
    .bind(now_ms())
    .bind(kind.to_string())
    .bind(subject.to_string())
    .execute(store.relaxed_pool())
    .await?;
    Ok(())
}

/// The instances of a lane waiting for their first turn, in log order, up to `limit`: the
/// worker that has the lane runs them one after another (see the worker's chain).
pub async fn lane_next(
    pool: &AnyPool,
    kind: &str,
    lane: &str,
    limit: i64,
) -> Result<Vec<Due>, sqlx::Error> {
    // Each status by equality, so each part walks the lane index in `seq` order (written
    // as subqueries: SQLite takes no parenthesized parts of a UNION).
    let part = |status: &str| {
        format!(
            "SELECT * FROM (SELECT {DUE_COLUMNS}, seq FROM process_work WHERE kind = $1 \
             AND lane = $2 AND status = '{status}' ORDER BY seq LIMIT $3) {status}"
        )
    };
    let sql = format!(
        "{} UNION ALL {} ORDER BY seq LIMIT $3",
        part("pending"),
        part("queued")
    );
    let rows = sqlx::query(&sql)
        .bind(kind.to_string())
        .bind(lane.to_string())
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(due_of).collect()
}

/// Makes the first queued instance (in log order) of each lane that has none pending due
/// now: of the lanes named, or of every lane. Answers how many it promoted.
///
/// Why: a starter never locks a lane (locking it made every worker finishing one of its
/// instances wait for the starter's whole batch). So a starter may queue an instance behind
/// a pending one that a worker is finishing at that very moment, neither seeing the other's
/// change, and the lane would wait forever. The worker closes that race: a lane whose
/// finished instance found no successor is looked at again here for a while
/// (`LANE_RECHECK`), and every lane every `STALL_SWEEP`.
pub async fn promote_lanes(
    store: &eventlog::EventStore,
    kind: &str,
    lanes: Option<&[String]>,
) -> Result<u64, sqlx::Error> {
    // Lane by lane (an index probe each), never row by row: a backlog queues thousands.
    let lanes_sql = match lanes {
        Some([]) => return Ok(0),
        Some(lanes) => {
            let params: Vec<String> = (0..lanes.len()).map(|i| format!("(${})", i + 3)).collect();
            format!(
                "SELECT column1 AS lane FROM (VALUES {}) AS v",
                params.join(", ")
            )
        }
        None => "SELECT DISTINCT lane FROM process_work \
                 WHERE kind = $2 AND status = 'queued' AND lane IS NOT NULL"
            .to_string(),
    };
    let sql = format!(
        "UPDATE process_work SET status = 'pending', due_at = $1, updated_at = $1 \
         WHERE kind = $2 AND status = 'queued' AND subject IN (\
             SELECT (SELECT q.subject FROM process_work q WHERE q.kind = $2 \
                 AND q.lane = l.lane AND q.status = 'queued' ORDER BY q.seq LIMIT 1) \
             FROM ({lanes_sql}) l \
             WHERE NOT EXISTS (SELECT 1 FROM process_work p WHERE p.kind = $2 \
                 AND p.lane = l.lane AND p.status = 'pending'))"
    );
    let mut query = sqlx::query(&sql).bind(now_ms()).bind(kind.to_string());
    for lane in lanes.unwrap_or_default() {
        query = query.bind(lane.clone());
    }
    Ok(query.execute(store.write_pool()).await?.rows_affected())
}

/// Looks at an instance again at `due_at` after its run failed on our side; its standing (and
/// its place in its lane) is left as it was.
pub async fn retry_later(
    store: &eventlog::EventStore,
    kind: &str,
    subject: &str,
    due_at: i64,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE process_work SET due_at = $1, last_error = $2, updated_at = $3 \
         WHERE kind = $4 AND subject = $5",
    )
    .bind(due_at)
    .bind(error.to_string())
    .bind(now_ms())
    .bind(kind.to_string())
    .bind(subject.to_string())
    .execute(store.write_pool())
    .await?;
    Ok(())
}

/// Instances of `kind` by standing (`pending` counts instances not yet begun).
pub async fn counts(pool: &AnyPool, kind: &str) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT status, COUNT(*) FROM process_work WHERE kind = $1 GROUP BY status ORDER BY status",
    )
    .bind(kind.to_string())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}
