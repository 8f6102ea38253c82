//! [`ProjectorRunner`]: one task per projector, reading the log from its own checkpoint.
//!
//! Each batch is one transaction: the read-model changes and the new checkpoint commit
//! together, so a crash at any point neither loses nor double-applies an event. On PostgreSQL
//! a session advisory lock keeps one active runner per projector across processes; the others
//! stand by. A failing event stalls the projector (it is retried with back-off and reported in
//! its status) rather than being skipped.
//!
//! A batch with no event the projector [wants](Projector::wants) writes nothing: the runner
//! moves its cursor in memory and persists the checkpoint with its next write, or after
//! [`PERSIST_SKIPPED_AFTER`] at the latest. Replaying skipped events after a crash is
//! harmless (they change nothing), so this trades no correctness for most write transactions.

use std::sync::Arc;
use std::time::Duration;

use eventlog::{checkpoint, Checkpoint, EventStore, StoredEvent};
use tokio::sync::{watch, Mutex};
use tokio::time::Instant;

pub use crate::feed::read_decoded;
use crate::feed::LogFeed;
use crate::projector::{DomainEvent, ProjectionError, Projector, Tables};

/// The longest a checkpoint moved past skipped events stays unpersisted (so a restart does not
/// re-read a long run of events this projector ignores).
/// A standby process follows this stored checkpoint, so it is also how long a standby's
/// read-your-writes can wait on an event this projector ignores.
pub const PERSIST_SKIPPED_AFTER: Duration = Duration::from_millis(250);

/// How often a standby runner reads the active runner's stored checkpoint.
const STANDBY_FOLLOW_EVERY: Duration = Duration::from_millis(50);
/// How often a standby runner tries to become the active one.
const STANDBY_CLAIM_EVERY: Duration = Duration::from_secs(1);

/// How far the runner has got: `cursor` (every event up to it is applied or irrelevant) and
/// `persisted` (the checkpoint as stored, which the next write must find unchanged). `None`
/// until loaded, and again after someone else moved the stored checkpoint.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    known: Option<Known>,
    /// The last batch came back full: the runner is behind and reads bigger batches.
    behind: bool,
}

#[derive(Debug, Clone, Copy)]
struct Known {
    cursor: Checkpoint,
    persisted: Checkpoint,
    persisted_at: Instant,
}

impl Progress {
    /// Forget the in-memory position (a rebuild's swap moved the stored checkpoint).
    pub(crate) fn reset(&mut self) {
        self.known = None;
        self.behind = false;
    }
}

/// What `/health` shows for a projector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectorStatus {
    pub checkpoint: Checkpoint,
    pub last_error: Option<String>,
    pub active: bool,
}

/// A handle to a running (or standby) projector.
#[derive(Clone)]
pub struct ProjectorHandle {
    pub projector: Arc<dyn Projector>,
    status: watch::Receiver<ProjectorStatus>,
    /// Held for each batch; a rebuild's final swap takes it so no batch runs mid-swap.
    pub(crate) batch_lock: Arc<Mutex<Progress>>,
}

impl ProjectorHandle {
    pub fn name(&self) -> &'static str {
        self.projector.name()
    }

    pub fn status(&self) -> ProjectorStatus {
        self.status.borrow().clone()
    }

    /// Changes whenever the status does (a process worker wakes on its starter's batches).
    pub fn watch(&self) -> watch::Receiver<ProjectorStatus> {
        self.status.clone()
    }

    /// Waits until this projector has applied everything up to `target` (read-your-writes).
    /// Returns false on timeout.
    pub async fn wait_for(&self, target: Checkpoint, timeout: Duration) -> bool {
        let mut status = self.status.clone();
        let reached = tokio::time::timeout(timeout, async {
            loop {
                if status.borrow_and_update().checkpoint >= target {
                    return;
                }
                if status.changed().await.is_err() {
                    // Runner gone: wait out the timeout rather than spin.
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        reached.is_ok()
    }
}

pub struct ProjectorRunner {
    store: EventStore,
    projector: Arc<dyn Projector>,
    feed: Arc<LogFeed>,
    batch_size: i64,
    /// Batch size while behind (after a full batch): a restart after an outage catches up in
    /// rebuild-sized batches instead of live-sized ones.
    catch_up_size: i64,
    poll_interval: Duration,
    status: watch::Sender<ProjectorStatus>,
    batch_lock: Arc<Mutex<Progress>>,
    pace: Option<Pace>,
}

/// Asked after each batch that left a runner caught up: a pause before its next batch, if
/// any (see [`ProjectorRunner::pace`]).
pub type Pace = Arc<dyn Fn() -> Option<Duration> + Send + Sync>;

impl ProjectorRunner {
    /// A runner with a feed of its own; [`feed`](Self::feed) shares one between runners.
    pub fn new(store: EventStore, projector: Arc<dyn Projector>) -> Self {
        let (status, _) = watch::channel(ProjectorStatus::default());
        Self {
            feed: Arc::new(LogFeed::new(store.clone(), Duration::ZERO)),
            store,
            projector,
            batch_size: 500,
            catch_up_size: 5_000,
            poll_interval: Duration::from_millis(250),
            status,
            batch_lock: Arc::new(Mutex::new(Progress::default())),
            pace: None,
        }
    }

    /// Pauses between live batches while `pace` says so: a consumer allowed to lag (a
    /// process's starter) then reads fewer, bigger batches, one transaction each, while the
    /// service is busy. Never for read models, which read-your-writes waits on.
    pub fn pace(mut self, pace: Pace) -> Self {
        self.pace = Some(pace);
        self
    }

    /// One batch size, live and behind alike (tests pick small odd ones).
    pub fn batch_size(mut self, size: i64) -> Self {
        self.batch_size = size.max(1);
        self.catch_up_size = self.batch_size;
        self
    }

    /// Reads through `feed`, shared with the other live projectors.
    pub fn feed(mut self, feed: Arc<LogFeed>) -> Self {
        self.feed = feed;
        self
    }

    pub fn handle(&self) -> ProjectorHandle {
        ProjectorHandle {
            projector: self.projector.clone(),
            status: self.status.subscribe(),
            batch_lock: self.batch_lock.clone(),
        }
    }

    /// Starts the runner; it stops when `shutdown` resolves.
    pub fn spawn(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> (ProjectorHandle, tokio::task::JoinHandle<()>) {
        let handle = self.handle();
        let task = tokio::spawn(async move {
            tokio::select! {
                _ = self.run() => {}
                _ = shutdown => {}
            }
        });
        (handle, task)
    }

    async fn run(self) {
        let name = self.projector.name();
        // Keep the advisory lock's connection for as long as we run. Until we hold it,
        // another process's runner is active: follow its stored checkpoint, so this
        // process's read-your-writes waits see the read models move (they are shared).
        loop {
            match self
                .store
                .leadership()
                .try_lead(&format!("projector:{name}"))
                .await
            {
                Ok(true) => break,
                Ok(false) => self.follow_active(STANDBY_CLAIM_EVERY).await,
                Err(err) => {
                    self.report_error(&err.into());
                    self.follow_active(STANDBY_CLAIM_EVERY).await;
                }
            }
        }
        self.status.send_modify(|s| s.active = true);
        tracing::info!(projector = name, "projector active");
        let mut wake = self.store.wake().subscribe();
        let mut backoff = Duration::from_millis(100);
        // The wake generation this batch answers; `None` after a poll timeout.
        let mut seen = None;
        loop {
            match self.next_batch(seen).await {
                Ok(Batch { full: false, .. }) => {
                    backoff = Duration::from_millis(100);
                    if let Some(pause) = self.pace.as_ref().and_then(|pace| pace()) {
                        tokio::time::sleep(pause).await;
                    }
                    seen = tokio::select! {
                        _ = wake.changed() => Some(self.store.wake().generation()),
                        _ = tokio::time::sleep(self.poll_interval) => None,
                    };
                }
                Ok(Batch { full: true, .. }) => {
                    backoff = Duration::from_millis(100);
                    seen = Some(self.store.wake().generation());
                }
                Err(err) => {
                    tracing::error!(projector = name, error = %err, "projection batch failed; retrying");
                    self.report_error(&err);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Standby: for `period`, mirrors the stored checkpoint (written by the active runner
    /// of another process) into this runner's status.
    async fn follow_active(&self, period: Duration) {
        let until = Instant::now() + period;
        let name = self.projector.name();
        while Instant::now() < until {
            match checkpoint::load(self.store.pool(), name).await {
                Ok(stored) => self.status.send_modify(|s| {
                    s.checkpoint = s.checkpoint.max(stored);
                    s.active = false;
                }),
                Err(err) => self.report_error(&err.into()),
            }
            tokio::time::sleep(STANDBY_FOLLOW_EVERY).await;
        }
    }

    fn report_error(&self, err: &ProjectionError) {
        let message = err.to_string();
        self.status.send_modify(|s| s.last_error = Some(message));
    }

    /// Applies one batch, reading the log afresh; returns how many events it covered.
    pub async fn run_batch(&self) -> Result<usize, ProjectionError> {
        Ok(self.next_batch(None).await?.events)
    }

    /// One batch after the runner's cursor, read through the feed (`seen`: see
    /// [`LogFeed::read_after`]). Events are applied and the checkpoint moved in one
    /// transaction, unless the batch holds nothing this projector wants.
    async fn next_batch(&self, seen: Option<u64>) -> Result<Batch, ProjectionError> {
        let mut progress = self.batch_lock.lock().await;
        let name = self.projector.name();
        let known = match progress.known {
            Some(known) => known,
            None => {
                let stored = checkpoint::load(self.store.pool(), name).await?;
                Known {
                    cursor: stored,
                    persisted: stored,
                    persisted_at: Instant::now(),
                }
            }
        };
        progress.known = Some(known);
        let limit = if progress.behind {
            self.catch_up_size
        } else {
            self.batch_size
        };
        let events = self.feed.read_after(known.cursor, limit, seen).await?;
        let full = events.len() as i64 >= limit;
        progress.behind = full;
        let Some(last) = events.last().map(|(stored, _)| stored.checkpoint()) else {
            // Quiet: persist a cursor moved past skipped events once it is overdue, so a
            // standby following the stored checkpoint is not left waiting on them.
            if known.cursor > known.persisted
                && known.persisted_at.elapsed() >= PERSIST_SKIPPED_AFTER
            {
                let mut tx = self
                    .store
                    .backend()
                    .begin_relaxed(self.store.write_pool())
                    .await?;
                if checkpoint::advance(&mut tx, name, known.persisted, known.cursor).await? {
                    tx.commit().await?;
                    progress.known = Some(Known {
                        persisted: known.cursor,
                        persisted_at: Instant::now(),
                        ..known
                    });
                } else {
                    drop(tx);
                    progress.reset();
                    return Ok(Batch::EMPTY);
                }
            }
            self.status
                .send_modify(|s| s.checkpoint = s.checkpoint.max(known.cursor));
            return Ok(Batch::EMPTY);
        };
        let count = events.len();
        let wanted = events.iter().any(|(_, e)| self.projector.wants(e));
        let overdue = known.persisted_at.elapsed() >= PERSIST_SKIPPED_AFTER;
        if wanted || overdue {
            // The stored checkpoint may lag the cursor by skipped events: moving it from
            // `persisted` covers them too.
            let applied = apply_batch(
                &self.store,
                self.projector.as_ref(),
                Tables::LIVE,
                name,
                known.persisted,
                &events,
            )
            .await?;
            if !applied {
                tracing::warn!(
                    projector = name,
                    "checkpoint moved by someone else; re-reading"
                );
                progress.reset();
                return Ok(Batch::EMPTY);
            }
            progress.known = Some(Known {
                cursor: last,
                persisted: last,
                persisted_at: Instant::now(),
            });
        } else {
            progress.known = Some(Known {
                cursor: last,
                ..known
            });
        }
        self.status.send_modify(|s| {
            s.checkpoint = last;
            s.last_error = None;
        });
        Ok(Batch {
            events: count,
            full,
        })
    }
}

/// What one batch covered.
#[derive(Debug, Clone, Copy)]
struct Batch {
    events: usize,
    /// As many events as asked for: there may be more right behind.
    full: bool,
}

impl Batch {
    const EMPTY: Batch = Batch {
        events: 0,
        full: false,
    };
}

/// Applies `events` (read after checkpoint `from`) and moves checkpoint `checkpoint_name` to
/// the last of them, atomically. Returns false, applying nothing, when the checkpoint is no
/// longer at `from` (another process or a rebuild's swap moved it).
pub async fn apply_batch(
    store: &EventStore,
    projector: &dyn Projector,
    tables: Tables,
    checkpoint_name: &str,
    from: Checkpoint,
    events: &[(StoredEvent, DomainEvent)],
) -> Result<bool, ProjectionError> {
    let Some((last, _)) = events.last() else {
        return Ok(true);
    };
    let mut tx = store.backend().begin_relaxed(store.write_pool()).await?;
    if !checkpoint::advance(&mut tx, checkpoint_name, from, last.checkpoint()).await? {
        return Ok(false);
    }
    // The correlation of each event on its way into the read model (RUST_LOG=debug).
    if tracing::enabled!(tracing::Level::DEBUG) {
        for (stored, _) in events {
            tracing::debug!(
                projector = projector.name(),
                position = stored.position,
                event_type = %stored.event_type,
                correlation_id = %stored.metadata.correlation_id,
                "projected"
            );
        }
    }
    projector.apply_batch(&mut tx, tables, events).await?;
    tx.commit().await?;
    Ok(true)
}
