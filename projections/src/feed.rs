//! [`LogFeed`]: one read of the log shared by every live projector.
//!
//! Every projector follows the same log, and in steady state they all sit at the same
//! checkpoint. Reading and decoding the tail once per wake-up instead of once per projector
//! takes five of every six reads off the database, and spacing reads at most one per
//! `interval` under sustained load turns a stream of one-event batches into fewer, larger ones
//! (both measured in the ingest benchmark: projector work competes for the same cores as the
//! webhooks it follows).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use eventlog::{Checkpoint, EventStore, StoredEvent};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::projector::{DomainEvent, ProjectionError};

/// A decoded slice of the log, shared read-only between projectors.
pub type Batch = Arc<Vec<(StoredEvent, DomainEvent)>>;

/// How many recent reads are kept for projectors that lag a batch or two behind the others.
const KEPT_READS: usize = 4;

struct Read {
    from: Checkpoint,
    limit: i64,
    /// The wake generation taken just before the read: it saw everything announced up to it.
    generation: u64,
    at: Instant,
    events: Batch,
}

/// Reads the log after a checkpoint on behalf of several projectors.
pub struct LogFeed {
    store: EventStore,
    interval: Duration,
    reads: Mutex<VecDeque<Read>>,
}

impl LogFeed {
    /// A feed whose reads are spaced at least `interval` apart while the log keeps growing
    /// (a read that came back full is followed at once: that is catching up).
    pub fn new(store: EventStore, interval: Duration) -> Self {
        Self {
            store,
            interval,
            reads: Mutex::new(VecDeque::new()),
        }
    }

    /// Events after `from`, at most `limit`. With `seen` (the wake generation the caller
    /// woke up on), a read from the same checkpoint taken after that wake-up is reused; with
    /// `None` (a polling caller, which may be looking for what no wake-up announced) the log is
    /// always read.
    pub async fn read_after(
        &self,
        from: Checkpoint,
        limit: i64,
        seen: Option<u64>,
    ) -> Result<Batch, ProjectionError> {
        let mut reads = self.reads.lock().await;
        if let Some(seen) = seen {
            let reusable = reads
                .iter()
                .rev()
                .find(|r| r.from == from && r.limit == limit && r.generation >= seen);
            if let Some(read) = reusable {
                return Ok(read.events.clone());
            }
        }
        // Space reads out under load; the lock is held meanwhile, so every projector waking
        // in this window shares the read that follows.
        if let Some(last) = reads.back() {
            let caught_up = (last.events.len() as i64) < last.limit;
            if caught_up && !last.events.is_empty() {
                tokio::time::sleep_until(last.at + self.interval).await;
            }
        }
        let generation = self.store.wake().generation();
        let at = Instant::now();
        let events: Batch = Arc::new(read_decoded(&self.store, from, limit).await?);
        if reads.len() == KEPT_READS {
            reads.pop_front();
        }
        reads.push_back(Read {
            from,
            limit,
            generation,
            at,
            events: events.clone(),
        });
        Ok(events)
    }
}

/// Reads up to `limit` events after `from`, each decoded into the domain event it is.
pub async fn read_decoded(
    store: &EventStore,
    from: Checkpoint,
    limit: i64,
) -> Result<Vec<(StoredEvent, DomainEvent)>, ProjectionError> {
    store
        .read_all_with(from, limit, DomainEvent::decode_payload)
        .await
}
