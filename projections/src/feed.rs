//! [`LogFeed`]: one read of the log shared by every live projector.
//!
//! Every projector follows the same log, and in steady state they all sit at the same
//! checkpoint. Reading and decoding the tail once per wake-up instead of once per projector
//! takes five of every six reads off the database, and spacing reads at most one per
//! `interval` under sustained load turns a stream of one-event batches into fewer, larger ones
//! (both measured in the ingest benchmark: projector work competes for the same cores as the
//! webhooks it follows).
//!
//! Runners drift apart (one applies a slower batch, and the others read past it), so a read
//! that reached the end of the log also serves a runner whose checkpoint lies inside it: the
//! part after that checkpoint is what a read of its own would have returned.

use std::collections::VecDeque;
use std::ops::{Deref, Range};
use std::sync::Arc;
use std::time::Duration;

use eventlog::{Checkpoint, EventStore, StoredEvent};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::projector::{DomainEvent, ProjectionError};

/// A decoded slice of the log, shared read-only between projectors.
#[derive(Clone)]
pub struct Batch {
    read: Arc<Vec<(StoredEvent, DomainEvent)>>,
    range: Range<usize>,
}

impl Deref for Batch {
    type Target = [(StoredEvent, DomainEvent)];

    fn deref(&self) -> &Self::Target {
        &self.read[self.range.clone()]
    }
}

impl Batch {
    /// Whether both come from one read of the log.
    pub fn same_read(&self, other: &Batch) -> bool {
        Arc::ptr_eq(&self.read, &other.read)
    }

    fn whole(read: Arc<Vec<(StoredEvent, DomainEvent)>>) -> Batch {
        let range = 0..read.len();
        Batch { read, range }
    }
}

/// How many recent reads are kept for projectors that lag a batch or two behind the others.
const KEPT_READS: usize = 4;

struct Read {
    from: Checkpoint,
    limit: i64,
    /// The wake generation taken just before the read: it saw everything announced up to it.
    generation: u64,
    at: Instant,
    events: Arc<Vec<(StoredEvent, DomainEvent)>>,
}

impl Read {
    /// What a read after `from` of at most `limit` events would have returned when this read
    /// was taken, if this read can tell: it started at or before `from` and reached the end of
    /// the log then (it came back short), or it is the same read.
    fn serves(&self, from: Checkpoint, limit: i64) -> Option<Batch> {
        if self.from == from && self.limit == limit {
            return Some(Batch::whole(self.events.clone()));
        }
        let reached_end = (self.events.len() as i64) < self.limit;
        if !reached_end || self.from > from {
            return None;
        }
        // Ordered by checkpoint (the log's read order): the first event after `from`.
        let start = self
            .events
            .partition_point(|(stored, _)| stored.checkpoint() <= from);
        let end = self.events.len().min(start + limit.max(0) as usize);
        Some(Batch {
            read: self.events.clone(),
            range: start..end,
        })
    }
}

/// Reads the log after a checkpoint on behalf of several projectors.
pub struct LogFeed {
    store: EventStore,
    interval: Duration,
    /// A longer spacing while it answers one (see [`LogFeed::stretch`]).
    stretched: std::sync::OnceLock<crate::runner::Pace>,
    reads: Mutex<VecDeque<Read>>,
}

impl LogFeed {
    /// A feed whose reads are spaced at least `interval` apart while the log keeps growing
    /// (a read that came back full is followed at once: that is catching up).
    pub fn new(store: EventStore, interval: Duration) -> Self {
        Self {
            store,
            interval,
            stretched: std::sync::OnceLock::new(),
            reads: Mutex::new(VecDeque::new()),
        }
    }

    /// Spaces reads by what `spacing` answers instead of `interval` while it answers one (the
    /// service under a burst: fewer, bigger batches, each read model's rows written once per
    /// batch instead of once per event; read-your-writes waits up to that much longer).
    /// Set once; later calls are ignored.
    pub fn stretch(&self, spacing: crate::runner::Pace) {
        let _ = self.stretched.set(spacing);
    }

    fn spacing(&self) -> Duration {
        self.stretched
            .get()
            .and_then(|spacing| spacing())
            .unwrap_or(self.interval)
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
                .filter(|r| r.generation >= seen)
                .find_map(|r| r.serves(from, limit));
            if let Some(batch) = reusable {
                return Ok(batch);
            }
        }
        // Space reads out under load; the lock is held meanwhile, so every projector waking
        // in this window shares the read that follows.
        if let Some(last) = reads.back() {
            let caught_up = (last.events.len() as i64) < last.limit;
            if caught_up && !last.events.is_empty() {
                tokio::time::sleep_until(last.at + self.spacing()).await;
            }
        }
        let generation = self.store.wake().generation();
        let at = Instant::now();
        let events = Arc::new(read_decoded(&self.store, from, limit).await?);
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
        Ok(Batch::whole(events))
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

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::organization::OrganizationEvent;

    /// An event at (transaction, position).
    fn at(transaction_id: i64, position: i64) -> (StoredEvent, DomainEvent) {
        let stored = StoredEvent {
            position,
            transaction_id,
            aggregate_type: "organization".into(),
            aggregate_id: "o".into(),
            sequence: position,
            event_type: "OrganizationDeleted".into(),
            event_version: 1,
            payload: serde_json::Value::Null,
            metadata: eventlog::CommandMeta::new("system:test").for_event(0),
            recorded_at: 0,
        };
        let event = DomainEvent::Organization(OrganizationEvent::OrganizationDeleted {});
        (stored, event)
    }

    fn read(from: Checkpoint, limit: i64, events: Vec<(StoredEvent, DomainEvent)>) -> Read {
        Read {
            from,
            limit,
            generation: 1,
            at: Instant::now(),
            events: Arc::new(events),
        }
    }

    fn positions(batch: Option<Batch>) -> Option<Vec<i64>> {
        batch.map(|b| b.iter().map(|(s, _)| s.position).collect())
    }

    fn cp(transaction_id: i64, position: i64) -> Checkpoint {
        Checkpoint {
            transaction_id,
            position,
        }
    }

    #[test]
    fn a_read_to_the_end_serves_every_checkpoint_inside_it() {
        // Commit order: transaction 7 (positions 5, 6), then 8 (position 4).
        let short = read(cp(7, 4), 10, vec![at(7, 5), at(7, 6), at(8, 4)]);
        assert_eq!(positions(short.serves(cp(7, 4), 10)), Some(vec![5, 6, 4]));
        assert_eq!(positions(short.serves(cp(7, 5), 10)), Some(vec![6, 4]));
        assert_eq!(positions(short.serves(cp(7, 6), 10)), Some(vec![4]));
        assert_eq!(positions(short.serves(cp(7, 5), 1)), Some(vec![6]), "limit");
        assert_eq!(
            positions(short.serves(cp(8, 4), 10)),
            Some(vec![]),
            "caught up"
        );
        assert_eq!(
            positions(short.serves(cp(6, 9), 10)),
            None,
            "starts after it"
        );
    }

    #[test]
    fn a_full_read_serves_only_its_own_request() {
        let full = read(cp(0, 0), 2, vec![at(0, 1), at(0, 2)]);
        assert_eq!(positions(full.serves(cp(0, 0), 2)), Some(vec![1, 2]));
        assert_eq!(positions(full.serves(cp(0, 1), 2)), None, "more may follow");
        assert_eq!(positions(full.serves(cp(0, 0), 5)), None);
    }
}
