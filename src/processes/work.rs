//! `process_work`: each process instance's timer and summary. The instance's progress is its
//! stream in the log; this row only says when its worker next has something to do
//! (`due_at`, NULL once completed) and how it stands, for `/health` and the worker's query.

use eventlog::now_ms;
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

/// Records instances to start, due now (inside the starter's batch transaction: they commit
/// with its checkpoint). `seq` orders a lane: the log position of the starting event. An
/// instance of a lane that already has one waiting is `queued` (not due) behind it. An
/// instance already recorded is left as it is.
/// The event that started instances: its correlation id and its own id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cause {
    pub correlation_id: Uuid,
    pub event_id: Uuid,
}

pub async fn insert_starts(
    tx: &mut Transaction<'static, Any>,
    kind: &str,
    seq: i64,
    cause: Option<Cause>,
    starts: &[Start],
) -> Result<(), sqlx::Error> {
    if tx.backend_name() == "PostgreSQL" {
        return insert_starts_at_once(tx, kind, seq, cause, starts).await;
    }
    // SQLite has one writer at a time: a worker cannot finish the lane's pending instance
    // between this look and this insert.
    let now = now_ms();
    for start in starts {
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
        .bind(seq)
        .bind(cause.map(|c| c.correlation_id.to_string()))
        .bind(cause.map(|c| c.event_id.to_string()))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// [`insert_starts`] in one statement on PostgreSQL (an event delivered to 16 endpoints
/// starts 16 instances: one round trip, not 32). Of several new instances of one lane, only
/// the first can be pending, and none when the lane already has one waiting. (The lanes are
/// probed one by one, `LATERAL … LIMIT 1`, each status by equality so the index finds it:
/// as a semi-join the planner scanned every instance of every lane, 8 ms with a backlog.)
///
/// No row is locked: a starter that locked the lanes' pending rows made every worker
/// finishing one wait for the starter's whole batch (measured: 13 ms per delivery, the
/// webhook backlog's bound). The race it closed, a worker finishing the lane's pending
/// instance while this statement sees it pending (so the new one is queued behind a lane
/// nobody will promote), is closed by the worker with [`promote_lanes`].
async fn insert_starts_at_once(
    tx: &mut Transaction<'static, Any>,
    kind: &str,
    seq: i64,
    cause: Option<Cause>,
    starts: &[Start],
) -> Result<(), sqlx::Error> {
    let rows: Vec<Value> = starts
        .iter()
        .enumerate()
        .map(|(n, start)| {
            serde_json::json!({
                "n": n,
                "subject": start.subject,
                "organization_id": start.organization_id.map(|o| o.to_string()),
                "input": start.input.to_string(),
                "lane": start.lane,
            })
        })
        .collect();
    sqlx::query(
        "WITH r AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY lane ORDER BY n) AS nth \
             FROM json_to_recordset($1::json) AS r(n bigint, subject text, organization_id text, \
             input text, lane text)), \
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
             CASE WHEN queued THEN NULL ELSE $3 END, $3, $3, lane, $4, $5, $6 \
         FROM s ORDER BY n ON CONFLICT (kind, subject) DO NOTHING",
    )
    .bind(eventlog::json::to_text(&rows).map_err(|e| sqlx::Error::Protocol(e.to_string()))?)
    .bind(kind.to_string())
    .bind(now_ms())
    .bind(seq)
    .bind(cause.map(|c| c.correlation_id.to_string()))
    .bind(cause.map(|c| c.event_id.to_string()))
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
    let mut tx = store.write_pool().begin().await?;
    for (seq, start) in starts {
        insert_starts(&mut tx, kind, *seq, None, std::slice::from_ref(start)).await?;
    }
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
/// are not due until [`update`] makes them pending).
pub async fn due(
    pool: &AnyPool,
    kind: &str,
    now: i64,
    limit: i64,
) -> Result<Vec<Due>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT subject, organization_id, input, lane, correlation_id, causation_id \
         FROM process_work \
         WHERE kind = $1 AND due_at IS NOT NULL AND due_at <= $2 \
         ORDER BY due_at, seq LIMIT $3",
    )
    .bind(kind.to_string())
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(due_of).collect()
}

/// A `process_work` row read as (subject, organization_id, input, lane, correlation_id,
/// causation_id).
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

/// What the worker learned running an instance.
#[derive(Debug, Clone)]
pub struct Update<'a> {
    /// The instance's lane: when its first attempt is done, the next queued one is due.
    pub lane: Option<&'a str>,
    pub standing: Standing,
    pub due_at: Option<i64>,
    pub attempts: i64,
    pub failed_steps: &'a [String],
    pub last_error: Option<&'a str>,
}

/// Writes the instance's timer and summary. Committed without waiting for the disk
/// (`synchronous_commit = off`): the row is an index over the instance's stream, and one lost
/// in a crash is rebuilt from that stream the next time the instance is due (at worst it is
/// due again and its worker finds nothing left to do).
/// What followed an instance in its lane once its worker was done with it.
#[derive(Debug, Clone)]
pub enum Followed {
    /// It has no lane, or is not done with its first turn.
    NoLane,
    /// The lane's next instance, now pending and due: its worker may run it at once.
    Next(Due),
    /// No queued instance was found (a starter may be queueing one right now: see
    /// [`promote_lanes`]).
    Nothing,
}

pub async fn update(
    store: &eventlog::EventStore,
    kind: &str,
    subject: &str,
    update: Update<'_>,
) -> Result<Followed, sqlx::Error> {
    const SET: &str = "UPDATE process_work SET status = $1, due_at = $2, attempts = $3, \
         failed_steps = $4, last_error = $5, updated_at = $6 WHERE kind = $7 AND subject = $8";
    // The lane's next instance, when none of its instances is waiting for a first turn.
    const PROMOTE: &str =
        "UPDATE process_work SET status = 'pending', due_at = $6, updated_at = $6 \
         WHERE kind = $7 AND subject = (SELECT subject FROM process_work \
             WHERE kind = $7 AND lane = $9 AND status = 'queued' ORDER BY seq LIMIT 1) \
         AND NOT EXISTS (SELECT 1 FROM process_work \
             WHERE kind = $7 AND lane = $9 AND status = 'pending' AND subject <> $8) \
         RETURNING subject, organization_id, input, lane, correlation_id, causation_id";
    let bind = |sql| {
        sqlx::query(sql)
            .bind(update.standing.as_str())
            .bind(update.due_at)
            .bind(update.attempts)
            .bind((!update.failed_steps.is_empty()).then(|| update.failed_steps.join(",")))
            .bind(update.last_error.map(str::to_string))
            .bind(now_ms())
            .bind(kind.to_string())
            .bind(subject.to_string())
    };
    let mut tx = store.backend().begin_relaxed(store.write_pool()).await?;
    let promoted = match update.lane {
        None => {
            bind(SET).execute(&mut *tx).await?;
            None
        }
        // PostgreSQL: one statement (its parts see the rows as they were, hence `subject <>
        // $8`: this instance is pending until updated). A queued instance a starter commits
        // meanwhile is not seen; the answer `Nothing` has the worker look again.
        Some(lane) if store.backend() == eventlog::Backend::Postgres => {
            let sql = format!("WITH me AS ({SET}) {PROMOTE}");
            Some(
                bind(&sql)
                    .bind(lane.to_string())
                    .fetch_optional(&mut *tx)
                    .await?,
            )
        }
        Some(lane) => {
            bind(SET).execute(&mut *tx).await?;
            Some(
                bind(PROMOTE)
                    .bind(lane.to_string())
                    .fetch_optional(&mut *tx)
                    .await?,
            )
        }
    };
    let followed = match promoted {
        None => Followed::NoLane,
        Some(Some(row)) => Followed::Next(due_of(&row)?),
        Some(None) => Followed::Nothing,
    };
    tx.commit().await?;
    Ok(followed)
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
