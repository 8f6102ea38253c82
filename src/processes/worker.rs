//! A process's worker: finds due instances and runs them (`instance`), a lane's one after
//! another in log order, at most `PROCESS_CONCURRENCY` at once, one active worker per
//! process and database.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use projections::{ProjectorHandle, ProjectorStatus};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::starter::StartMark;
use super::work;
use super::ProcessDefinition;
use crate::state::AppState;

/// How often an idle worker looks for instances whose timer came due.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How long a lane whose finished instance found no successor is looked at again (on every
/// wake-up), in case a starter was queueing one at that moment (see `work::promote_lanes`).
const LANE_RECHECK: Duration = Duration::from_secs(2);
/// Lanes waiting for a recheck are looked at at most this often (one statement for all).
const RECHECK_EVERY: Duration = Duration::from_millis(20);
/// Instances of one lane a worker task runs in a row before it hands the lane back.
const CHAIN: usize = 64;
/// How often every lane is looked at (a safety net behind `LANE_RECHECK`).
const STALL_SWEEP: Duration = Duration::from_secs(5);
/// How long due rows read ahead (for slots not yet free) are taken as still due: only this
/// worker runs its process's instances, so they stay due until it runs them; the limit bounds
/// what someone else (an operator's retry, say) could have changed meanwhile.
const READ_AHEAD_FOR: Duration = Duration::from_secs(1);
/// How often a standby worker tries to become the active one.
const STANDBY_CLAIM_EVERY: Duration = Duration::from_secs(1);
/// An instance whose run failed on our side (the store) is looked at again after this.
const RETRY_AFTER_ERROR_MS: i64 = 2_000;

/// What `/health` shows for a process's worker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerStatus {
    pub active: bool,
    pub steps_run: u64,
    pub last_error: Option<String>,
}

/// A running (or standby) process: its starter and its worker.
#[derive(Clone)]
pub struct ProcessHandle {
    pub kind: &'static str,
    pub starter: ProjectorHandle,
    status: watch::Receiver<WorkerStatus>,
}

impl ProcessHandle {
    pub fn status(&self) -> WorkerStatus {
        self.status.borrow().clone()
    }
}

pub struct Worker {
    definition: Arc<dyn ProcessDefinition>,
    state: Arc<AppState>,
    starter: ProjectorHandle,
    started: Arc<StartMark>,
    status: watch::Sender<WorkerStatus>,
}

impl Worker {
    pub fn new(
        definition: Arc<dyn ProcessDefinition>,
        state: Arc<AppState>,
        starter: ProjectorHandle,
        started: Arc<StartMark>,
    ) -> Self {
        let (status, _) = watch::channel(WorkerStatus::default());
        Worker {
            definition,
            state,
            starter,
            started,
            status,
        }
    }

    /// Starts the worker; it stops when `shutdown` resolves (steps in flight are abandoned
    /// as a crash would abandon them, and resumed from their streams).
    pub fn spawn(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> ProcessHandle {
        let handle = ProcessHandle {
            kind: self.definition.kind(),
            starter: self.starter.clone(),
            status: self.status.subscribe(),
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = self.run() => {}
                _ = shutdown => {}
            }
        });
        handle
    }

    async fn run(self) {
        let kind = self.definition.kind();
        loop {
            let lead = self
                .state
                .store
                .leadership()
                .try_lead(&format!("process:{kind}"))
                .await;
            match lead {
                Ok(true) => break,
                Ok(false) => tokio::time::sleep(STANDBY_CLAIM_EVERY).await,
                Err(err) => {
                    self.report(Some(err.to_string()));
                    tokio::time::sleep(STANDBY_CLAIM_EVERY).await;
                }
            }
        }
        self.status.send_modify(|s| s.active = true);
        tracing::info!(process = kind, "process worker active");
        let concurrency = self.state.config.process_concurrency;
        let mut wake: watch::Receiver<ProjectorStatus> = self.starter.watch();
        let mut tasks = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, (String, Option<String>)> = HashMap::new();
        let mut subjects: HashSet<String> = HashSet::new();
        // Lanes with an instance running: one at a time per lane.
        let mut lanes: HashSet<String> = HashSet::new();
        // Swept at once on taking over: a lane whose worker died while running its waiting
        // instances has none pending, and must not wait for the first sweep.
        let mut swept: Option<std::time::Instant> = None;
        let mut rechecked = std::time::Instant::now();
        // Lanes whose last finished instance found no successor, since when.
        let mut idle: HashMap<String, std::time::Instant> = HashMap::new();
        // Whether to look for due instances: at first, when a slot frees, when a lane was
        // promoted, every IDLE_POLL (timers), and when the starter's batch that started
        // instances has committed; not on every batch the starter reads.
        let mut look = true;
        // Due rows read ahead, oldest first (lane-less only: a lane's rows are chained by its
        // task), so a slot that frees takes the next one without a query: a drain of N
        // instances costs about N / concurrency due queries instead of N.
        let mut ahead: std::collections::VecDeque<work::Due> = std::collections::VecDeque::new();
        let mut ahead_read = std::time::Instant::now();
        // The read that filled `ahead` came back full: more may be due behind it.
        let mut ahead_full = false;
        let mut looked_through = eventlog::Checkpoint::START;
        let mut next_poll = tokio::time::Instant::now() + IDLE_POLL;
        loop {
            idle.retain(|_, since| since.elapsed() < LANE_RECHECK);
            let recheck: Option<Vec<String>> = if swept.is_none_or(|t| t.elapsed() >= STALL_SWEEP) {
                swept = Some(std::time::Instant::now());
                None
            } else if rechecked.elapsed() >= RECHECK_EVERY {
                rechecked = std::time::Instant::now();
                Some(idle.keys().cloned().collect())
            } else {
                Some(Vec::new())
            };
            match work::promote_lanes(&self.state.store, kind, recheck.as_deref()).await {
                Ok(0) => {}
                Ok(n) => {
                    look = true;
                    tracing::debug!(process = kind, lanes = n, "queued instances promoted");
                    for lane in recheck.iter().flatten() {
                        idle.remove(lane);
                    }
                }
                Err(err) => tracing::warn!(process = kind, error = %err, "lane promotion failed"),
            }
            let free = concurrency.saturating_sub(tasks.len());
            if free > 0 && look {
                next_poll = tokio::time::Instant::now() + IDLE_POLL;
                if ahead.is_empty() || ahead_read.elapsed() >= READ_AHEAD_FOR {
                    ahead.clear();
                    // Due rows of running subjects and taken lanes are skipped: read past
                    // them, and a slot-full more for the slots that free next — unless lanes
                    // are running (their rows are not kept: reading ahead would only read more).
                    let ahead_by = if lanes.is_empty() { concurrency } else { 0 };
                    let limit = (free + subjects.len() + lanes.len() + ahead_by) as i64;
                    let now = self.state.clock.now_ms();
                    match work::due(self.state.store.pool(), kind, now, limit).await {
                        Ok(rows) => {
                            ahead_full = rows.len() as i64 >= limit;
                            ahead_read = std::time::Instant::now();
                            // Rows of instances running now are left out here, not only when
                            // taken: one that finished before its row was taken would
                            // otherwise run again on a row read while it ran.
                            ahead.extend(
                                rows.into_iter()
                                    .filter(|row| !taken(row, &subjects, &lanes)),
                            );
                        }
                        Err(err) => {
                            tracing::error!(process = kind, error = %err, "reading due instances failed");
                            self.report(Some(err.to_string()));
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
                while tasks.len() < concurrency {
                    let Some(row) = ahead.pop_front() else {
                        break;
                    };
                    // Two rows of one lane in one read: the second waits for the first.
                    if taken(&row, &subjects, &lanes) {
                        continue;
                    }
                    subjects.insert(row.subject.clone());
                    if let Some(lane) = &row.lane {
                        lanes.insert(lane.clone());
                    }
                    let subject = (row.subject.clone(), row.lane.clone());
                    let definition = self.definition.clone();
                    let state = self.state.clone();
                    let status = self.status.clone();
                    let id = tasks
                        .spawn(async move { run_lane(&*definition, &state, &status, row).await })
                        .id();
                    running.insert(id, subject);
                }
                // A lane's rows are never kept for later (its task may chain them meanwhile).
                let left_over = ahead.len();
                ahead.retain(|row| row.lane.is_none());
                let dropped = left_over - ahead.len();
                // Nothing kept: look again next turn if the read may have left more due.
                look = ahead.is_empty() && (ahead_full || dropped > 0);
            }
            tokio::select! {
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let id = match joined {
                        Ok((id, followed)) => {
                            if let (false, Some((_, Some(lane)))) = (followed, running.get(&id)) {
                                idle.insert(lane.clone(), std::time::Instant::now());
                            }
                            id
                        }
                        Err(err) => {
                            tracing::error!(process = kind, error = %err, "process step panicked");
                            err.id()
                        }
                    };
                    if let Some((subject, lane)) = running.remove(&id) {
                        subjects.remove(&subject);
                        if let Some(lane) = lane {
                            lanes.remove(&lane);
                        }
                    }
                    look = true;
                }
                _ = wake.changed() => {
                    // The mark is set inside the starter's transaction, the status after
                    // its commit: starts at or before the status are visible. A starter
                    // led by another process marks nothing here: look on its every move.
                    let (through, leading) = {
                        let status = wake.borrow();
                        (status.checkpoint, status.active)
                    };
                    let started = self.started.last();
                    if !leading || (started > looked_through && started <= through) {
                        looked_through = through;
                        look = true;
                    }
                }
                _ = tokio::time::sleep_until(next_poll) => {
                    look = true;
                    next_poll = tokio::time::Instant::now() + IDLE_POLL;
                }
            }
        }
    }

    fn report(&self, error: Option<String>) {
        self.status.send_modify(|s| s.last_error = error);
    }
}

/// Whether `row`'s instance is running, or its lane is taken by a running one.
fn taken(row: &work::Due, subjects: &HashSet<String>, lanes: &HashSet<String>) -> bool {
    subjects.contains(&row.subject) || row.lane.as_ref().is_some_and(|l| lanes.contains(l))
}

/// Runs an instance, then the instances of its lane waiting for their first turn, in log
/// order, one after another on this task (the lane stays taken, so the worker's loop leaves
/// it alone): no due query and no hop through the loop between two deliveries to one
/// endpoint. After `CHAIN` instances the lane is handed back (its next one made pending).
/// Answers `false` when the lane was left with none waiting, to be looked at again (a
/// starter may be queueing one right now: see `work::promote_lanes`).
async fn run_lane(
    definition: &dyn ProcessDefinition,
    state: &Arc<AppState>,
    status: &watch::Sender<WorkerStatus>,
    first: work::Due,
) -> bool {
    let kind = definition.kind();
    let Some(lane) = first.lane.clone() else {
        advance_logged(definition, state, status, &first).await;
        return true;
    };
    let mut row = first;
    let mut waiting = std::collections::VecDeque::new();
    for ran in 1..=CHAIN {
        if !advance_logged(definition, state, status, &row).await {
            // It is due again soon; the lane waits for it as for a pending instance.
            return true;
        }
        if waiting.is_empty() {
            let limit = (CHAIN - ran) as i64;
            match work::lane_next(state.store.pool(), kind, &lane, limit.max(1)).await {
                Ok(rows) => waiting = rows.into(),
                Err(err) => {
                    tracing::warn!(process = kind, %lane, error = %err, "reading the lane failed");
                    return false;
                }
            }
        }
        match waiting.pop_front() {
            Some(next) if ran < CHAIN => row = next,
            Some(_) => break,
            None => return false,
        }
    }
    let lanes = [lane];
    if let Err(err) = work::promote_lanes(&state.store, kind, Some(&lanes)).await {
        tracing::warn!(process = kind, lane = %lanes[0], error = %err, "handing the lane back failed");
        return false;
    }
    true
}

/// Runs one instance; answers whether it ran (on `false` it is due again shortly).
async fn advance_logged(
    definition: &dyn ProcessDefinition,
    state: &Arc<AppState>,
    status: &watch::Sender<WorkerStatus>,
    row: &work::Due,
) -> bool {
    let kind = definition.kind();
    // Under a burst of requests, in turn with the other processes' runs (`crate::foreground`).
    let work = state
        .foreground
        .background(super::instance::advance(definition, state, status, row));
    let span = tracing::info_span!(
        "process_instance",
        process = definition.kind(),
        subject = %row.subject,
        correlation_id = tracing::field::Empty,
    );
    let advanced = match row.cause {
        Some(cause) => {
            span.record(
                "correlation_id",
                tracing::field::display(cause.correlation_id),
            );
            let inherited = eventlog::context::Inherited {
                correlation_id: cause.correlation_id,
                causation_id: Some(cause.event_id),
            };
            eventlog::context::within(inherited, work)
                .instrument(span)
                .await
        }
        None => work.instrument(span).await,
    };
    match advanced {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(process = kind, subject = %row.subject, error = %err, "process run failed; retrying soon");
            status.send_modify(|s| s.last_error = Some(err.to_string()));
            let due_at = state.clock.now_ms() + RETRY_AFTER_ERROR_MS;
            let _ =
                work::retry_later(&state.store, kind, &row.subject, due_at, &err.to_string()).await;
            false
        }
    }
}
