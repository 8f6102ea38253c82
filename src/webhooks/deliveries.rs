//! The raw-delivery ledger (`webhook_deliveries`): every accepted delivery's raw body and the
//! answer it got, for audit and replay, and for answering an exact redelivery with the first
//! answer.
//!
//! A 2xx means the raw body is durable too, without a second flush per delivery:
//! 1. [`Ledger::receive`] writes the body (answer pending, `status_code = 0`) BEFORE the
//!    delivery's commands run, and waits for that commit, which does not wait for the disk
//!    (`synchronous_commit = off`);
//! 2. the delivery's events are appended with a durable commit. The log is written and
//!    flushed in order, so that flush makes the earlier ledger commit durable too (PostgreSQL
//!    WAL, SQLite's WAL file: a later commit never survives without an earlier one);
//! 3. [`Ledger::answer`] fills in the answer in the background. A delivery that appended
//!    nothing has no flush to ride on: its answer is written durably and waited for.
//!
//! A crash can lose an answer (the row stays pending); a redelivery is then answered from
//! the log through the commands' idempotency keys. Rows are written by [`Ledger`]'s writer
//! task, everything queued meanwhile in one transaction. Until an answer is written,
//! [`Ledger::find`] answers from memory, so this process never misses its own deliveries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventlog::{now_ms, EventStore};
use projections::batch::{insert_rows, Cell};
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use super::Outcome;

/// Messages waiting for the writer before callers wait (back-pressure).
const QUEUE: usize = 512;
/// Messages per transaction.
const PER_WRITE: usize = 256;
/// Attempts at writing a batch whole before it is written one message at a time.
const BATCH_ATTEMPTS: usize = 3;
/// The longest [`Ledger::flush`] waits.
const FLUSH_WAIT: Duration = Duration::from_secs(20);
/// The longest a delivery waits for its row before it is answered 503 (the provider retries).
const RECORD_WAIT: Duration = Duration::from_secs(10);
/// `status_code` of a row whose answer is not written yet.
const PENDING: i64 = 0;

const COLUMNS: [&str; 12] = [
    "provider",
    "delivery_key",
    "organization_id",
    "message_type",
    "received_at",
    "content_type",
    "body",
    "status_code",
    "response",
    "first_position",
    "last_position",
    "event_count",
];

pub struct Delivery<'a> {
    pub provider: &'a str,
    pub key: &'a str,
    pub organization_id: Option<String>,
    pub message_type: Option<String>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

type Key = (String, String);

enum Write {
    /// A received body, answer pending.
    Received { cells: Vec<Cell> },
    /// The answer to a received delivery.
    Answer {
        key: Key,
        outcome: Outcome,
        organization_id: Option<String>,
    },
}

struct Message {
    write: Write,
    /// Wants its transaction flushed to disk before `done` is told.
    durable: bool,
    /// Told whether the write committed (dropped unanswered if the writer gave up).
    done: Option<oneshot::Sender<bool>>,
}

enum Queued {
    Write(Message),
    Flush(oneshot::Sender<()>),
}

/// The raw delivery could not be recorded in time (its events may be in the log).
#[derive(Debug, thiserror::Error)]
#[error("the raw delivery could not be recorded durably in time; retry")]
pub struct NotRecorded;

/// Handle to the ledger writer; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    store: EventStore,
    queue: mpsc::Sender<Queued>,
    /// Answers given but not yet written.
    unwritten: Arc<Mutex<HashMap<Key, Outcome>>>,
}

impl Ledger {
    /// Starts the writer task; it ends once every handle is dropped and the queue is drained.
    pub fn start(store: EventStore) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let unwritten = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(write_loop(store.clone(), rx, unwritten.clone()));
        Self {
            store,
            queue,
            unwritten,
        }
    }

    /// The answer given to an earlier delivery with this key, if any.
    pub async fn find(&self, provider: &str, key: &str) -> Result<Option<Outcome>, sqlx::Error> {
        let queued = self.find_unwritten(provider, key);
        if queued.is_some() {
            return Ok(queued);
        }
        find_written(&self.store, provider, key).await
    }

    /// The answer to a delivery this process answered but has not written yet.
    pub fn find_unwritten(&self, provider: &str, key: &str) -> Option<Outcome> {
        self.unwritten
            .lock()
            .ok()
            .and_then(|u| u.get(&(provider.to_string(), key.to_string())).cloned())
    }

    /// Records a delivery's raw body before its commands run (see the module comment).
    pub async fn receive(&self, delivery: Delivery<'_>) -> Result<(), NotRecorded> {
        // PostgreSQL text cannot hold U+0000 (a form body can carry one).
        let cells = vec![
            delivery.provider.into(),
            clean(delivery.key).into(),
            delivery.organization_id.as_deref().map(clean).into(),
            delivery.message_type.as_deref().map(clean).into(),
            now_ms().into(),
            delivery.content_type.map(clean).into(),
            clean(&String::from_utf8_lossy(delivery.body)).into(),
            PENDING.into(),
            "null".to_string().into(),
            0i64.into(),
            0i64.into(),
            0i64.into(),
        ];
        self.send(Write::Received { cells }, false, true).await
    }

    /// Records the answer to a received delivery (the first answer for a key wins). Waited
    /// for, durably, only when the delivery appended no event whose flush covers its body.
    pub async fn answer(
        &self,
        provider: &str,
        key: &str,
        organization_id: Option<String>,
        outcome: &Outcome,
    ) -> Result<(), NotRecorded> {
        let key = (provider.to_string(), key.to_string());
        if let Ok(mut unwritten) = self.unwritten.lock() {
            unwritten
                .entry(key.clone())
                .or_insert_with(|| outcome.clone());
        }
        let appended = outcome.event_count > 0;
        let write = Write::Answer {
            key,
            outcome: outcome.clone(),
            organization_id,
        };
        self.send(write, !appended, !appended).await
    }

    async fn send(&self, write: Write, durable: bool, wait: bool) -> Result<(), NotRecorded> {
        let (done, committed) = oneshot::channel();
        let message = Message {
            write,
            durable,
            done: wait.then_some(done),
        };
        let sent = tokio::time::timeout(RECORD_WAIT, async {
            match self.queue.send(Queued::Write(message)).await {
                Ok(()) if wait => committed.await.unwrap_or(false),
                Ok(()) => true,
                // The writer is gone (shutting down): write this one directly.
                Err(mpsc::error::SendError(Queued::Write(message))) => {
                    let ok = write_batch(&self.store, std::slice::from_ref(&message))
                        .await
                        .inspect_err(
                            |err| tracing::error!(error = %err, "delivery ledger write failed"),
                        )
                        .is_ok();
                    forget(&self.unwritten, std::slice::from_ref(&message));
                    ok
                }
                Err(_) => false,
            }
        })
        .await;
        match sent {
            Ok(true) => Ok(()),
            _ => Err(NotRecorded),
        }
    }

    /// Waits until everything recorded so far is written (shutdown, tests), at most
    /// [`FLUSH_WAIT`]: a shutdown must not hang on a database that went away.
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        let flushed = tokio::time::timeout(FLUSH_WAIT, async {
            if self.queue.send(Queued::Flush(done)).await.is_ok() {
                let _ = written.await;
            }
        })
        .await;
        if flushed.is_err() {
            let unwritten = self.unwritten.lock().map(|u| u.len()).unwrap_or(0);
            tracing::error!(unwritten, "delivery ledger not flushed in time");
        }
    }
}

async fn write_loop(
    store: EventStore,
    mut rx: mpsc::Receiver<Queued>,
    unwritten: Arc<Mutex<HashMap<Key, Outcome>>>,
) {
    let mut queued = Vec::with_capacity(PER_WRITE);
    while rx.recv_many(&mut queued, PER_WRITE).await > 0 {
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        for item in queued.drain(..) {
            match item {
                Queued::Write(message) => batch.push(message),
                Queued::Flush(done) => flushes.push(done),
            }
        }
        let written = write_retrying(&store, &batch).await;
        forget(&unwritten, &batch);
        for (message, ok) in batch.into_iter().zip(written) {
            if let Some(done) = message.done {
                let _ = done.send(ok);
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Answers written (or given up on) no longer need answering from memory.
fn forget(unwritten: &Mutex<HashMap<Key, Outcome>>, batch: &[Message]) {
    if let Ok(mut unwritten) = unwritten.lock() {
        for message in batch {
            if let Write::Answer { key, .. } = &message.write {
                unwritten.remove(key);
            }
        }
    }
}

/// Writes `batch`, retrying while the database is unavailable: the audit trail is not
/// dropped because the database blinked. A batch that keeps failing is written one message at
/// a time, so one row the database refuses cannot block every later delivery's; such a row
/// is logged and dropped (its delivery is answered 503 if it waits). Returns, per message,
/// whether it was written.
async fn write_retrying(store: &EventStore, batch: &[Message]) -> Vec<bool> {
    let mut backoff = Duration::from_millis(50);
    for _ in 0..BATCH_ATTEMPTS {
        match write_batch(store, batch).await {
            Ok(()) => return vec![true; batch.len()],
            Err(err) => {
                tracing::error!(error = %err, messages = batch.len(), "delivery ledger write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    let mut written = Vec::with_capacity(batch.len());
    for message in batch {
        let mut backoff = Duration::from_millis(50);
        loop {
            match write_batch(store, std::slice::from_ref(message)).await {
                Ok(()) => {
                    written.push(true);
                    break;
                }
                Err(sqlx::Error::Database(err)) => {
                    tracing::error!(error = %err, "delivery ledger row refused; dropped");
                    written.push(false);
                    break;
                }
                Err(err) => {
                    tracing::error!(error = %err, "delivery ledger unavailable; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    written
}

fn clean(text: &str) -> String {
    eventlog::json::without_nul(text).into_owned()
}

/// One transaction: the received rows, then the answers. Relaxed (no wait for the disk)
/// unless a message asks for durability (see the module comment).
async fn write_batch(store: &EventStore, batch: &[Message]) -> Result<(), sqlx::Error> {
    let durable = batch.iter().any(|m| m.durable);
    let backend = store.backend();
    let mut tx = if durable {
        backend.begin_write(store.write_pool()).await?
    } else {
        backend.begin_relaxed(store.write_pool()).await?
    };
    let rows: Vec<Vec<Cell>> = batch
        .iter()
        .filter_map(|m| match &m.write {
            Write::Received { cells, .. } => Some(cells.clone()),
            Write::Answer { .. } => None,
        })
        .collect();
    insert_rows(
        &mut tx,
        "webhook_deliveries",
        &COLUMNS,
        rows,
        "ON CONFLICT (provider, delivery_key) DO NOTHING",
    )
    .await
    .map_err(|err| match err {
        projections::ProjectionError::Database(err) => err,
        other => sqlx::Error::Protocol(other.to_string()),
    })?;
    for message in batch {
        let Write::Answer {
            key,
            outcome,
            organization_id,
        } = &message.write
        else {
            continue;
        };
        // The first answer wins; a row received by another process keeps its own.
        sqlx::query(
            "UPDATE webhook_deliveries SET status_code = $1, response = $2, \
             first_position = $3, last_position = $4, event_count = $5, \
             organization_id = COALESCE(organization_id, $6) \
             WHERE provider = $7 AND delivery_key = $8 AND status_code = 0",
        )
        .bind(i64::from(outcome.status))
        .bind(clean(&outcome.body.to_string()))
        .bind(outcome.first_position)
        .bind(outcome.last_position)
        .bind(outcome.event_count)
        .bind(organization_id.as_deref().map(clean))
        .bind(key.0.clone())
        .bind(clean(&key.1))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

async fn find_written(
    store: &EventStore,
    provider: &str,
    key: &str,
) -> Result<Option<Outcome>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT status_code, response, first_position, last_position, event_count \
         FROM webhook_deliveries WHERE provider = $1 AND delivery_key = $2 AND status_code <> 0",
    )
    .bind(provider.to_string())
    .bind(key.to_string())
    .fetch_optional(store.pool())
    .await?;
    row.map(|row| {
        let response: String = row.try_get(1)?;
        Ok(Outcome {
            status: u16::try_from(row.try_get::<i64, _>(0)?).unwrap_or(200),
            body: serde_json::from_str(&response).unwrap_or_default(),
            first_position: row.try_get(2)?,
            last_position: row.try_get(3)?,
            event_count: row.try_get(4)?,
        })
    })
    .transpose()
}

pub fn sha256_hex(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
        hasher.update([0u8]);
    }
    hex::encode(hasher.finalize())
}
