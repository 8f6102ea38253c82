//! [`AggregateRepository`]: the command side. Loads an aggregate (snapshot + the events after
//! it), lets the cqrs-es aggregate decide, appends the decided events in one transaction, and
//! retries on a concurrency conflict with fresh state.
//!
//! cqrs-es' own `CqrsFramework` is not used: it dispatches queries in the request after commit
//! (lost on a crash), cannot carry an idempotency key, and does not report log positions.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use thiserror::Error;

use crate::event::{Append, AppendResult, CommandMeta, NewEvent, StoredEvent};
use crate::gate::StreamGates;
use crate::snapshot::{self, Snapshot};
use crate::{EventStore, StoreError, Upcasters};

/// How many aggregates the in-memory cache keeps before it is thinned out.
const CACHE_CAPACITY: usize = 10_000;

/// How long `execute` decides on a cached state without reading the stream's tail first.
const DEFAULT_TRUST: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Cached<A> {
    state: A,
    version: i64,
    /// When the stream's tail was last read (or written) through this repository.
    checked: Instant,
}

/// How long a command keeps retrying conflicts with OTHER processes (this process's own
/// commands to one stream take turns and never conflict with each other) before the conflict
/// is reported. A provider's delivery is then answered 503 with `Retry-After`, never 409.
const CONFLICT_BUDGET: Duration = Duration::from_secs(10);
/// The first pause after a conflict; it doubles (with full jitter) up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(2);
const MAX_BACKOFF: Duration = Duration::from_millis(250);

#[derive(Debug, Error)]
pub enum ExecuteError<E: std::error::Error> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Domain(E),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The outcome of one command.
#[derive(Debug)]
pub struct Executed<A: Aggregate> {
    /// Events this call appended (empty for a no-op or an idempotent replay).
    pub events: Vec<A::Event>,
    pub result: AppendResult,
    /// The aggregate's state after the command.
    pub state: A,
}

pub struct AggregateRepository<A: Aggregate> {
    store: EventStore,
    services: Arc<A::Services>,
    upcasters: Upcasters,
    snapshot_every: i64,
    schema_version: i32,
    /// Recently used states by id, with when the stream's tail was last read. `load` still
    /// reads the tail after the cached version, so a state written by another process is never
    /// missed; `execute` may decide on a recent entry without reading (see there).
    cache: Arc<Mutex<HashMap<String, Cached<A>>>>,
    /// How long `execute` trusts a cache entry without reading the stream's tail.
    trust_cache_for: Duration,
    /// Commands to one stream take turns inside this process.
    gates: StreamGates,
    /// How long conflicts with other processes are retried.
    conflict_budget: Duration,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> Clone for AggregateRepository<A> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            services: self.services.clone(),
            upcasters: self.upcasters.clone(),
            snapshot_every: self.snapshot_every,
            schema_version: self.schema_version,
            cache: self.cache.clone(),
            trust_cache_for: self.trust_cache_for,
            gates: self.gates.clone(),
            conflict_budget: self.conflict_budget,
            _aggregate: PhantomData,
        }
    }
}

impl<A> AggregateRepository<A>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    pub fn new(store: EventStore, services: A::Services) -> Self {
        Self {
            store,
            services: Arc::new(services),
            upcasters: Upcasters::new(),
            snapshot_every: 50,
            schema_version: 1,
            cache: Arc::new(Mutex::new(HashMap::new())),
            trust_cache_for: DEFAULT_TRUST,
            gates: StreamGates::default(),
            conflict_budget: CONFLICT_BUDGET,
            _aggregate: PhantomData,
        }
    }

    /// Takes a snapshot whenever a stream's version crosses a multiple of `every` (0 = never).
    pub fn with_snapshots(mut self, every: i64, schema_version: i32) -> Self {
        self.snapshot_every = every;
        self.schema_version = schema_version;
        self
    }

    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Deserializes a stored event of this aggregate, upcasting old versions first.
    pub fn decode(&self, event: &StoredEvent) -> Result<A::Event, StoreError> {
        let payload = self.upcasters.upcast(
            &event.event_type,
            event.event_version,
            event.payload.clone(),
        );
        Ok(serde_json::from_value(payload)?)
    }

    /// How long `execute` may decide on a cached state without reading the stream's tail
    /// (0 = always read it).
    pub fn trust_cache_for(mut self, age: Duration) -> Self {
        self.trust_cache_for = age;
        self
    }

    /// How long conflicts with other processes are retried before one is reported.
    pub fn conflict_budget(mut self, budget: Duration) -> Self {
        self.conflict_budget = budget;
        self
    }

    /// The current state and version: from the cache or the newest usable snapshot, plus the
    /// events after it. Handling a command therefore costs the same on the 500th event of a
    /// stream as on the 1st.
    pub async fn load(&self, id: &str) -> Result<(A, i64), StoreError> {
        let start = match self.cached(id) {
            Some(hit) => Some((hit.state, hit.version)),
            None => self.usable_snapshot(id).await?,
        };
        let (mut aggregate, mut version) = start.unwrap_or_default();
        for event in self.store.read_stream(A::TYPE, id, version).await? {
            aggregate.apply(self.decode(&event)?);
            version = event.sequence;
        }
        // An empty stream is remembered too: a load usually comes right before a command to
        // the same stream (a process instance's first run), which then decides on it without
        // reading the stream again; if another process wrote meanwhile, the append conflicts
        // and the command is decided on fresh state.
        self.remember(id, &aggregate, version);
        Ok((aggregate, version))
    }

    /// Like [`load`](Self::load), but a cached state whose tail was read less than `max_age`
    /// ago is returned as is: for readers that accept that much staleness from other
    /// processes (this process's own writes are always in the cache).
    pub async fn load_within(&self, id: &str, max_age: Duration) -> Result<(A, i64), StoreError> {
        match self.cached(id) {
            Some(hit) if hit.checked.elapsed() < max_age => Ok((hit.state, hit.version)),
            _ => self.load(id).await,
        }
    }

    /// The state of a stream the caller knows to be new, without reading it (a cached state
    /// wins). Should it not be new after all, the next command's append conflicts and the
    /// command is decided again on the stream read fresh.
    pub fn assume_new(&self, id: &str) -> (A, i64) {
        self.presume_new(id);
        self.cached(id)
            .map_or_else(|| (A::default(), 0), |hit| (hit.state, hit.version))
    }

    /// [`assume_new`](Self::assume_new) for a caller that goes on to `execute` (which reads
    /// the cache itself): no copy of a cached state is made.
    pub fn presume_new(&self, id: &str) {
        if !self.cache().contains_key(id) {
            self.remember(id, &A::default(), 0);
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached<A>>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(&self, id: &str) -> Option<Cached<A>> {
        self.cache().get(id).cloned()
    }

    fn remember(&self, id: &str, aggregate: &A, version: i64) {
        let mut cache = self.cache();
        if cache.len() >= CACHE_CAPACITY && !cache.contains_key(id) {
            // Thin out arbitrarily: a miss only costs a snapshot read.
            let drop: Vec<String> = cache.keys().take(CACHE_CAPACITY / 2).cloned().collect();
            for key in drop {
                cache.remove(&key);
            }
        }
        match cache.get_mut(id) {
            Some(hit) if hit.version > version => {}
            Some(hit) if hit.version == version => hit.checked = Instant::now(),
            _ => {
                cache.insert(
                    id.to_string(),
                    Cached {
                        state: aggregate.clone(),
                        version,
                        checked: Instant::now(),
                    },
                );
            }
        }
    }

    /// State rebuilt from every event, ignoring snapshots (audits and tests compare the two).
    pub async fn replay(&self, id: &str) -> Result<(A, i64), StoreError> {
        let events = self.store.read_stream(A::TYPE, id, 0).await?;
        let version = events.last().map_or(0, |event| event.sequence);
        Ok((self.fold(&events)?, version))
    }

    /// The state `events` (a whole stream, in order) fold to.
    pub fn fold(&self, events: &[StoredEvent]) -> Result<A, StoreError> {
        let mut aggregate = A::default();
        for event in events {
            aggregate.apply(self.decode(event)?);
        }
        Ok(aggregate)
    }

    async fn usable_snapshot(&self, id: &str) -> Result<Option<(A, i64)>, StoreError> {
        if self.snapshot_every <= 0 {
            return Ok(None);
        }
        let Some(snapshot) = snapshot::load(self.store.pool(), A::TYPE, id).await? else {
            return Ok(None);
        };
        if snapshot.schema_version != self.schema_version {
            return Ok(None);
        }
        match serde_json::from_str::<A>(&snapshot.payload) {
            Ok(state) => Ok(Some((state, snapshot.sequence))),
            Err(err) => {
                tracing::warn!(aggregate = A::TYPE, id, error = %err, "unreadable snapshot; replaying");
                Ok(None)
            }
        }
    }

    /// Handles `command` against aggregate `id` and appends what it decided.
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<Executed<A>, ExecuteError<A::Error>> {
        // A repeated idempotency key is not looked up first (a round trip on every command):
        // the append's unique key catches it, and the rarer paths below check for it.
        //
        // The first attempt may decide on a recently cached state without reading the
        // stream's tail: if another process appended meanwhile, the append conflicts on the
        // sequence and the command is decided again on fresh state. A refusal or a no-op
        // decided on cached state is also re-decided fresh before it is believed.
        //
        // Commands to this stream from this process take turns (see `gate`): the state the
        // previous one left in the cache is current, so only another process can conflict.
        let _turn = self.gates.turn(id).await;
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut trusted = !self.trust_cache_for.is_zero();
        loop {
            let cached = if trusted {
                self.cached(id)
                    .filter(|hit| hit.checked.elapsed() < self.trust_cache_for)
            } else {
                None
            };
            let from_cache = cached.is_some();
            let (mut aggregate, version) = match cached {
                Some(hit) => (hit.state, hit.version),
                None => self.load(id).await?,
            };
            trusted = false;
            let sink: EventSink<A> = EventSink::default();
            let decided = aggregate
                .handle(command.clone(), &self.services, &sink)
                .await;
            if let Err(err) = decided {
                if from_cache {
                    continue;
                }
                // The command may be refused only because it already happened.
                return match self.earlier_result(id, meta).await? {
                    Some(previous) => Ok(previous),
                    None => Err(ExecuteError::Domain(err)),
                };
            }
            let events = sink.collect().await;
            if events.is_empty() {
                if from_cache {
                    continue;
                }
                if let Some(previous) = self.earlier_result(id, meta).await? {
                    return Ok(previous);
                }
            }
            let append = self.to_append(id, version, &events, &aggregate, meta)?;
            match self.store.append(append).await {
                Ok(result) if result.duplicate => {
                    let (state, _) = self.load(id).await?;
                    return Ok(Executed {
                        events: Vec::new(),
                        result,
                        state,
                    });
                }
                Ok(result) => {
                    if result.event_count > 0 {
                        self.remember(id, &aggregate, result.version);
                    }
                    return Ok(Executed {
                        events,
                        result,
                        state: aggregate,
                    });
                }
                Err(StoreError::Conflict { .. }) if from_cache => continue,
                Err(StoreError::Conflict { .. }) if started.elapsed() < self.conflict_budget => {
                    // Another process wrote this stream meanwhile. Full jitter keeps two
                    // processes that keep colliding from colliding in step.
                    let pause = backoff.mul_f64(rand::random::<f64>());
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// The outcome of an earlier command with the same idempotency key, if there was one.
    async fn earlier_result(
        &self,
        id: &str,
        meta: &CommandMeta,
    ) -> Result<Option<Executed<A>>, StoreError> {
        let Some(key) = &meta.idempotency_key else {
            return Ok(None);
        };
        let Some(previous) = self.store.find_append(key).await? else {
            return Ok(None);
        };
        let (state, _) = self.load(id).await?;
        Ok(Some(Executed {
            events: Vec::new(),
            result: previous,
            state,
        }))
    }

    fn to_append(
        &self,
        id: &str,
        version: i64,
        events: &[A::Event],
        aggregate: &A,
        meta: &CommandMeta,
    ) -> Result<Append, StoreError> {
        let new_version = version + events.len() as i64;
        let crosses = self.snapshot_every > 0
            && new_version / self.snapshot_every > version / self.snapshot_every;
        let snapshot = if crosses {
            Some(Snapshot {
                sequence: new_version,
                schema_version: self.schema_version,
                payload: crate::json::to_text(aggregate)?,
            })
        } else {
            None
        };
        let events = events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                Ok(NewEvent {
                    event_type: event.event_type(),
                    event_version: event.event_version().parse().unwrap_or(1),
                    payload: serde_json::to_value(event)?,
                    metadata: meta.for_event(i),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Append {
            aggregate_type: A::TYPE.to_string(),
            aggregate_id: id.to_string(),
            expected_version: version,
            events,
            idempotency_key: meta.idempotency_key.clone(),
            snapshot,
        })
    }
}
