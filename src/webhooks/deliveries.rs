//! The raw-delivery ledger (`webhook_deliveries`): every accepted delivery's raw body and the
//! answer it got, for audit and replay, and for answering an exact redelivery with the first
//! answer.
//!
//! A 2xx means the raw body is durable too. [`Ledger::keep`] offers the row to the delivery's
//! first append ([`eventlog::side`]): it is committed in the same statement as the events, so
//! most deliveries pay for one durable commit, not two. Its answer (status, body, positions)
//! is filled in afterwards by a relaxed update nobody waits for (answers share one for up to
//! [`ANSWER_LINGER`]); a row whose answer never arrived (the process died in between) shows
//! status 0, and a redelivery of it runs its commands again under their idempotency keys,
//! which give the first answer.
//!
//! A delivery that appended nothing is written by [`Ledger::record`], which waits until its
//! row is durably committed. Rows are written by [`Ledger`]'s writer task, every row that
//! queued meanwhile in one statement, so concurrent deliveries share the commit. A row that
//! cannot be written in time fails the delivery with a 503: its events are already in the
//! log, and the provider's retry is answered from the commands' idempotency keys and writes
//! the row then. Until a row or answer is written, [`Ledger::find`] answers from memory, so
//! this process never misses its own recent deliveries.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventlog::side::{SideRow, SideValue, SideWrite};
use eventlog::{now_ms, EventStore};
use projections::batch::{insert_rows, insert_rows_on, rows_per_statement, Cell};
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::Outcome;

/// Rows waiting for the writer before `record` makes callers wait (back-pressure).
const QUEUE: usize = 512;
/// Rows per write.
const PER_WRITE: usize = 256;
/// Attempts at writing a batch whole before it is written row by row.
const BATCH_ATTEMPTS: usize = 3;
/// How long a kept row's answer may wait for others to share its relaxed update (nobody
/// waits on it; meanwhile it is answered from memory). Fuller updates, fewer round trips.
const ANSWER_LINGER: Duration = Duration::from_millis(50);
/// The longest [`Ledger::flush`] waits.
const FLUSH_WAIT: Duration = Duration::from_secs(20);
/// The longest a delivery waits for its row before it is answered 503 (the provider retries).
const RECORD_WAIT: Duration = Duration::from_secs(10);

/// How a row kept with the events meets one already there (an earlier attempt's): it is left.
const KEPT: &str = "ON CONFLICT (provider, delivery_key) DO NOTHING";

/// How a recorded row meets one already there: a row kept with the events of an earlier
/// attempt that was never answered gets this answer; an answered one keeps its first.
const ANSWERED: &str = "ON CONFLICT (provider, delivery_key) DO UPDATE SET \
    status_code = excluded.status_code, response = excluded.response, \
    first_position = excluded.first_position, last_position = excluded.last_position, \
    event_count = excluded.event_count WHERE webhook_deliveries.status_code = 0";

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

struct Pending {
    provider: String,
    key: String,
    cells: Vec<Cell>,
    /// Told whether the row was written (dropped unanswered if the writer gave up).
    written: Option<oneshot::Sender<bool>>,
}

/// A kept row's answer, for the relaxed update.
struct Answer {
    key: Key,
    outcome: Outcome,
}

enum Message {
    Row(Pending),
    Answer(Answer),
    Flush(oneshot::Sender<()>),
}

/// The raw delivery could not be made durable in time (its events are in the log).
#[derive(Debug, thiserror::Error)]
#[error("the raw delivery could not be recorded durably in time; retry")]
pub struct NotRecorded;

type Key = (String, String);

/// Handle to the ledger writer; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    store: EventStore,
    queue: mpsc::Sender<Message>,
    /// Answers recorded but not yet written.
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

    /// The answer to a delivery recorded by this process but not yet written.
    pub fn find_unwritten(&self, provider: &str, key: &str) -> Option<Outcome> {
        self.unwritten
            .lock()
            .ok()
            .and_then(|u| u.get(&(provider.to_string(), key.to_string())).cloned())
    }

    /// Runs `work` (the delivery's handling) with the delivery's row riding on its first
    /// append, then records the answer: by a relaxed update when the row went in with the
    /// events, else by [`record`](Self::record).
    pub async fn keep<E, F>(&self, delivery: Delivery<'_>, work: F) -> Result<Outcome, E>
    where
        F: Future<Output = Result<Outcome, E>>,
        E: From<NotRecorded>,
    {
        // Boxed: the handling's future is large, and nesting it in the scope's would put it
        // twice on the stack of a debug build.
        let (outcome, written) =
            eventlog::side::carrying(ledger_row(&delivery, None, KEPT), Box::pin(work)).await;
        let outcome = outcome?;
        if written {
            self.answer(&delivery, &outcome).await;
        } else {
            self.record(delivery, &outcome).await?;
        }
        Ok(outcome)
    }

    /// Keeps `outcome` answerable from memory until its row or answer is written.
    fn remember(&self, delivery: &Delivery<'_>, outcome: &Outcome) -> Key {
        let key = (delivery.provider.to_string(), delivery.key.to_string());
        if let Ok(mut unwritten) = self.unwritten.lock() {
            unwritten
                .entry(key.clone())
                .or_insert_with(|| outcome.clone());
        }
        key
    }

    /// Queues the answer of a row already committed; answered from memory until written.
    async fn answer(&self, delivery: &Delivery<'_>, outcome: &Outcome) {
        let key = self.remember(delivery, outcome);
        let answer = Answer {
            key,
            outcome: outcome.clone(),
        };
        if let Err(mpsc::error::SendError(Message::Answer(answer))) =
            self.queue.send(Message::Answer(answer)).await
        {
            // The writer is gone (shutting down): write this one directly.
            if let Err(err) = write_answers(&self.store, std::slice::from_ref(&answer)).await {
                tracing::error!(error = %err, "delivery answer not recorded");
            }
            if let Ok(mut unwritten) = self.unwritten.lock() {
                unwritten.remove(&answer.key);
            }
        }
    }

    /// Records an accepted delivery and its answer (the first answer for a key wins) and
    /// waits until the row is durably committed.
    pub async fn record(
        &self,
        delivery: Delivery<'_>,
        outcome: &Outcome,
    ) -> Result<(), NotRecorded> {
        if self.store.shares_commits() {
            return self.record_shared(delivery, outcome).await;
        }
        let (written, done) = oneshot::channel();
        let pending = Pending {
            provider: delivery.provider.to_string(),
            key: delivery.key.to_string(),
            // PostgreSQL text cannot hold U+0000 (a form body can carry one).
            cells: values(&delivery, Some(outcome))
                .into_iter()
                .map(|value| match value {
                    SideValue::Text(text) => Cell::Text(text),
                    SideValue::Int(int) => Cell::Int(int),
                })
                .collect(),
            written: Some(written),
        };
        if let Ok(mut unwritten) = self.unwritten.lock() {
            unwritten
                .entry((pending.provider.clone(), pending.key.clone()))
                .or_insert_with(|| outcome.clone());
        }
        let recorded = tokio::time::timeout(RECORD_WAIT, async {
            match self.queue.send(Message::Row(pending)).await {
                Ok(()) => done.await.unwrap_or(false),
                Err(mpsc::error::SendError(message)) => {
                    // The writer is gone (shutting down): write this one directly.
                    let Message::Row(pending) = message else {
                        return false;
                    };
                    let key = (pending.provider.clone(), pending.key.clone());
                    let ok = match write(&self.store, vec![pending.cells]).await {
                        Ok(()) => true,
                        Err(err) => {
                            tracing::error!(error = %err, "delivery ledger write failed");
                            false
                        }
                    };
                    if let Ok(mut unwritten) = self.unwritten.lock() {
                        unwritten.remove(&key);
                    }
                    ok
                }
            }
        })
        .await;
        match recorded {
            Ok(true) => Ok(()),
            _ => Err(NotRecorded),
        }
    }

    /// [`record`](Self::record) on PostgreSQL: the row rides the next group-commit statement
    /// (the events' appends), so under load a delivery that appended nothing shares another's
    /// commit instead of paying for one of its own. Retried while the database is unavailable,
    /// within [`RECORD_WAIT`]; a row the database refuses is dropped with an error logged.
    async fn record_shared(
        &self,
        delivery: Delivery<'_>,
        outcome: &Outcome,
    ) -> Result<(), NotRecorded> {
        let key = self.remember(&delivery, outcome);
        let row = ledger_row(&delivery, Some(outcome), ANSWERED);
        let written = tokio::time::timeout(RECORD_WAIT, async {
            let mut backoff = Duration::from_millis(50);
            loop {
                match self.store.write_side(row.clone()).await {
                    Ok(()) => return true,
                    Err(eventlog::StoreError::Database(sqlx::Error::Database(err))) => {
                        tracing::error!(error = %err, provider = %key.0, delivery = %key.1,
                            "delivery ledger row refused; dropped");
                        return false;
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "delivery ledger unavailable; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        })
        .await;
        if let Ok(mut unwritten) = self.unwritten.lock() {
            unwritten.remove(&key);
        }
        match written {
            Ok(true) => Ok(()),
            _ => Err(NotRecorded),
        }
    }

    /// Waits until everything recorded so far is written (shutdown, tests), at most
    /// [`FLUSH_WAIT`]: a shutdown must not hang on a database that went away.
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        let flushed = tokio::time::timeout(FLUSH_WAIT, async {
            if self.queue.send(Message::Flush(done)).await.is_ok() {
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
    mut rx: mpsc::Receiver<Message>,
    unwritten: Arc<Mutex<HashMap<Key, Outcome>>>,
) {
    let mut messages = Vec::with_capacity(PER_WRITE);
    // Answers linger up to ANSWER_LINGER for company (nobody waits on them); rows never do.
    let mut answers: Vec<Answer> = Vec::new();
    let mut oldest: Option<Instant> = None;
    loop {
        let received = match oldest {
            Some(since) => {
                let left = ANSWER_LINGER.saturating_sub(since.elapsed());
                tokio::time::timeout(left, rx.recv_many(&mut messages, PER_WRITE))
                    .await
                    .ok()
            }
            None => Some(rx.recv_many(&mut messages, PER_WRITE).await),
        };
        let closed = received == Some(0);
        let mut keys = Vec::new();
        let mut rows = Vec::new();
        let mut recorders = Vec::new();
        let mut repeats = Vec::new();
        let mut waiters = Vec::new();
        for message in messages.drain(..) {
            match message {
                Message::Row(pending) => {
                    // One row per key in a statement (an upsert may not touch a row twice);
                    // a repeat is told the first one's fate.
                    let key = (pending.provider, pending.key);
                    match keys.iter().position(|k| k == &key) {
                        Some(first) => repeats.push((first, pending.written)),
                        None => {
                            keys.push(key);
                            rows.push(pending.cells);
                            recorders.push(pending.written);
                        }
                    }
                }
                Message::Answer(answer) => {
                    oldest.get_or_insert_with(Instant::now);
                    answers.push(answer);
                }
                Message::Flush(done) => waiters.push(done),
            }
        }
        let written = if rows.is_empty() {
            Vec::new()
        } else {
            write_retrying(&store, &keys, rows).await
        };
        let answers_due = closed
            || !waiters.is_empty()
            || answers.len() >= PER_WRITE
            || oldest.is_some_and(|since| since.elapsed() >= ANSWER_LINGER);
        if answers_due && !answers.is_empty() {
            answer_retrying(&store, &answers).await;
        }
        if let Ok(mut unwritten) = unwritten.lock() {
            for key in &keys {
                unwritten.remove(key);
            }
            if answers_due {
                for answer in &answers {
                    unwritten.remove(&answer.key);
                }
            }
        }
        if answers_due {
            answers.clear();
            oldest = None;
        }
        for (first, recorder) in repeats {
            if let Some(recorder) = recorder {
                let _ = recorder.send(written.get(first).copied().unwrap_or(false));
            }
        }
        for (recorder, ok) in recorders.into_iter().zip(written) {
            if let Some(recorder) = recorder {
                let _ = recorder.send(ok);
            }
        }
        for done in waiters {
            let _ = done.send(());
        }
        if closed {
            return;
        }
    }
}

/// Writes `rows`, retrying while the database is unavailable (the rows stay answerable from
/// memory meanwhile): the audit trail is not dropped because the database blinked. A batch
/// that keeps failing is written row by row, so one row the database refuses cannot block
/// every later delivery's; such a row is logged and dropped (its events are in the log, and
/// its delivery is answered 503). Returns, per row, whether it was written.
async fn write_retrying(store: &EventStore, keys: &[Key], rows: Vec<Vec<Cell>>) -> Vec<bool> {
    let mut backoff = Duration::from_millis(50);
    for _ in 0..BATCH_ATTEMPTS {
        match write(store, rows.clone()).await {
            Ok(()) => return vec![true; rows.len()],
            Err(err) => {
                tracing::error!(error = %err, rows = rows.len(), "delivery ledger write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    let mut written = Vec::with_capacity(rows.len());
    for (key, row) in keys.iter().zip(rows) {
        let mut backoff = Duration::from_millis(50);
        loop {
            match write(store, vec![row.clone()]).await {
                Ok(()) => {
                    written.push(true);
                    break;
                }
                Err(sqlx::Error::Database(err)) => {
                    tracing::error!(error = %err, provider = %key.0, delivery = %key.1,
                        "delivery ledger row refused; dropped (its events are in the log)");
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

/// Writes answers, retrying a while if the database is unavailable; then gives them up with
/// an error logged (the rows and their events are durable; only our answer's copy is lost).
async fn answer_retrying(store: &EventStore, answers: &[Answer]) {
    let mut backoff = Duration::from_millis(50);
    for attempt in 1..=BATCH_ATTEMPTS {
        match write_answers(store, answers).await {
            Ok(()) => return,
            Err(err) if attempt == BATCH_ATTEMPTS => {
                tracing::error!(error = %err, answers = answers.len(), "delivery answers not recorded");
            }
            Err(err) => {
                tracing::warn!(error = %err, answers = answers.len(), "delivery answers not written; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
}

/// The answers of rows committed with their events, in one relaxed statement: the first
/// answer wins (status 0 marks a row still waiting for one).
async fn write_answers(store: &EventStore, answers: &[Answer]) -> Result<(), sqlx::Error> {
    let tuples: Vec<String> = (0..answers.len())
        .map(|i| {
            let p = i * 7;
            format!(
                "(${}, ${}, CAST(${} AS BIGINT), ${}, CAST(${} AS BIGINT), CAST(${} AS BIGINT), \
                 CAST(${} AS BIGINT))",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7
            )
        })
        .collect();
    // VALUES columns are named column1, column2, … on both backends.
    let sql = format!(
        "UPDATE webhook_deliveries SET status_code = v.column3, response = v.column4, \
         first_position = v.column5, last_position = v.column6, event_count = v.column7 \
         FROM (VALUES {}) AS v WHERE webhook_deliveries.provider = v.column1 \
         AND webhook_deliveries.delivery_key = v.column2 AND webhook_deliveries.status_code = 0",
        tuples.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for answer in answers {
        let outcome = &answer.outcome;
        query = query
            .bind(answer.key.0.clone())
            .bind(answer.key.1.clone())
            .bind(i64::from(outcome.status))
            .bind(clean(&outcome.body.to_string()))
            .bind(outcome.first_position)
            .bind(outcome.last_position)
            .bind(outcome.event_count);
    }
    query.execute(store.relaxed_pool()).await?;
    Ok(())
}

/// The delivery's ledger row as a side row: before its answer (status 0) to ride on its first
/// append, or with its answer when it appended nothing.
fn ledger_row(
    delivery: &Delivery<'_>,
    answer: Option<&Outcome>,
    on_conflict: &'static str,
) -> SideRow {
    SideRow {
        table: "webhook_deliveries",
        columns: &COLUMNS,
        values: values(delivery, answer),
        write: SideWrite::Insert { on_conflict },
    }
}

/// The ledger row's values in [`COLUMNS`] order; without an answer yet, status 0. PostgreSQL
/// text cannot hold U+0000 (a form body can carry one): it is cleaned out.
fn values(delivery: &Delivery<'_>, answer: Option<&Outcome>) -> Vec<SideValue> {
    let text = |t: Option<&str>| SideValue::Text(t.map(clean));
    let int = |i: i64| SideValue::Int(Some(i));
    vec![
        text(Some(delivery.provider)),
        text(Some(delivery.key)),
        text(delivery.organization_id.as_deref()),
        text(delivery.message_type.as_deref()),
        int(now_ms()),
        text(delivery.content_type),
        SideValue::Text(Some(clean(&String::from_utf8_lossy(delivery.body)))),
        int(answer.map_or(0, |a| i64::from(a.status))),
        SideValue::Text(Some(
            answer
                .map(|a| clean(&a.body.to_string()))
                .unwrap_or_default(),
        )),
        int(answer.map_or(0, |a| a.first_position)),
        int(answer.map_or(0, |a| a.last_position)),
        int(answer.map_or(0, |a| a.event_count)),
    ]
}

fn clean(text: &str) -> String {
    eventlog::json::without_nul(text).into_owned()
}

/// One durable transaction for the rows (see the module comment).
async fn write(store: &EventStore, rows: Vec<Vec<Cell>>) -> Result<(), sqlx::Error> {
    let database = |err| match err {
        projections::ProjectionError::Database(err) => err,
        other => sqlx::Error::Protocol(other.to_string()),
    };
    let mut conn = store.write_pool().acquire().await?;
    // Rows that fit one statement commit with it (no BEGIN and COMMIT round trips).
    if rows.len() <= rows_per_statement(&conn, COLUMNS.len()) {
        return insert_rows_on(&mut conn, "webhook_deliveries", &COLUMNS, rows, ANSWERED)
            .await
            .map_err(database);
    }
    drop(conn);
    let mut tx = store.backend().begin_write(store.write_pool()).await?;
    insert_rows(&mut tx, "webhook_deliveries", &COLUMNS, rows, ANSWERED)
        .await
        .map_err(database)?;
    tx.commit().await
}

async fn find_written(
    store: &EventStore,
    provider: &str,
    key: &str,
) -> Result<Option<Outcome>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT status_code, response, first_position, last_position, event_count \
         FROM webhook_deliveries WHERE provider = $1 AND delivery_key = $2",
    )
    .bind(provider.to_string())
    .bind(key.to_string())
    .fetch_optional(store.pool())
    .await?;
    // Status 0: kept with its events, answer not (yet) recorded: not an answer to repeat.
    row.filter(|row| row.try_get::<i64, _>(0).is_ok_and(|status| status != 0))
        .map(|row| {
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
