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
    let now = now_ms();
    for start in starts {
        // On PostgreSQL the rows found are locked until this transaction commits: a worker
        // finishing the lane's pending instance meanwhile waits, then sees this one queued
        // and makes it pending (without the lock it could look first, and the lane would
        // stall). SQLite has one writer at a time, so the two cannot interleave.
        let lock = if tx.backend_name() == "PostgreSQL" {
            " FOR UPDATE"
        } else {
            ""
        };
        let waiting = match &start.lane {
            Some(lane) => sqlx::query(&format!(
                "SELECT 1 FROM process_work WHERE kind = $1 AND lane = $2 \
                 AND status IN ('pending', 'queued') LIMIT 1{lock}"
            ))
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
    rows.iter()
        .map(|row| {
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
                        (Some(c), Some(e)) => Uuid::parse_str(&c)
                            .ok()
                            .zip(Uuid::parse_str(&e).ok())
                            .map(|(correlation_id, event_id)| Cause {
                                correlation_id,
                                event_id,
                            }),
                        _ => None,
                    }
                },
            })
        })
        .collect()
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
pub async fn update(
    store: &eventlog::EventStore,
    kind: &str,
    subject: &str,
    update: Update<'_>,
) -> Result<(), sqlx::Error> {
    let mut tx = store.backend().begin_relaxed(store.write_pool()).await?;
    sqlx::query(
        "UPDATE process_work SET status = $1, due_at = $2, attempts = $3, failed_steps = $4, \
         last_error = $5, updated_at = $6 WHERE kind = $7 AND subject = $8",
    )
    .bind(update.standing.as_str())
    .bind(update.due_at)
    .bind(update.attempts)
    .bind((!update.failed_steps.is_empty()).then(|| update.failed_steps.join(",")))
    .bind(update.last_error.map(str::to_string))
    .bind(now_ms())
    .bind(kind.to_string())
    .bind(subject.to_string())
    .execute(&mut *tx)
    .await?;
    if let Some(lane) = update.lane {
        // The lane's next instance, when none of its instances is waiting for a first turn.
        sqlx::query(
            "UPDATE process_work SET status = 'pending', due_at = $1, updated_at = $1 \
             WHERE kind = $2 AND subject = (SELECT subject FROM process_work \
                 WHERE kind = $2 AND lane = $3 AND status = 'queued' ORDER BY seq LIMIT 1) \
             AND NOT EXISTS (SELECT 1 FROM process_work \
                 WHERE kind = $2 AND lane = $3 AND status = 'pending')",
        )
        .bind(now_ms())
        .bind(kind.to_string())
        .bind(lane.to_string())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
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
