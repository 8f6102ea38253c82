//! The live feed (the seed's Supabase Realtime), fed from the log.
//!
//! One task per service process (the [`Hub`]) follows the whole log with the projectors'
//! gap-free reads (a checkpoint of transaction and position, so an append that commits late
//! is not skipped) and broadcasts each event a dashboard cares about on its organization's
//! channel (an event wakes only that organization's streams). A client's stream
//! (`GET /api/v1/events/stream`) subscribes, then reads its organization's backlog after its
//! `Last-Event-ID` from the log up to the hub's position at that moment, then follows the
//! broadcast: the backlog and the broadcast meet at that position, so nothing is missed or
//! repeated. A client that falls further behind than the broadcast keeps is sent a `resync`
//! event with the position to resume from and dropped: it never slows ingest or the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aggregates::call::CallEvent;
use aggregates::organization::OrganizationEvent;
use eventlog::{Checkpoint, EventStore, StoredEvent};
use projections::DomainEvent;
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// Events per read: the projectors' batch, so their shared reads serve the hub too.
const READ_SIZE: i64 = 500;

/// How many events the broadcast keeps for slow clients.
pub const BUFFER: usize = 4096;

/// The log event types the feed shows (for the backlog read).
pub const FEED_EVENT_TYPES: [&str; 10] = [
    "CallStarted",
    "CallStatusChanged",
    "TranscriptSegmentAdded",
    "FunctionCallHandled",
    "CallEnded",
    "CallProcessed",
    "ContactCreated",
    "ContactUpdated",
    "ContactDeleted",
    "CallHungUp",
];

/// One feed event.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    pub organization_id: String,
    /// The log position: the SSE `id`.
    pub position: i64,
    /// `call.started`, `call.status`, `transcript.segment`, `call.action`, `call.ended`,
    /// `call.processed`, `contact.created`, `contact.updated`, `contact.deleted`.
    pub kind: &'static str,
    pub at: chrono::DateTime<chrono::Utc>,
    pub data: Value,
}

/// The feed event a log event is, if any.
pub fn feed_event(stored: &StoredEvent, event: &DomainEvent) -> Option<FeedEvent> {
    let organization_id = stored.metadata.tenant_id.clone()?;
    let id = &stored.aggregate_id;
    let (kind, data) = match event {
        DomainEvent::Call(CallEvent::CallStarted {
            from_number,
            to_number,
            direction,
            assistant_id,
            started_at,
            ..
        }) => (
            "call.started",
            json!({"call_id": id, "from_number": from_number, "to_number": to_number,
                   "direction": direction, "assistant_id": assistant_id, "started_at": started_at}),
        ),
        DomainEvent::Call(CallEvent::CallStatusChanged { status, .. }) => {
            ("call.status", json!({"call_id": id, "status": status}))
        }
        DomainEvent::Call(CallEvent::CallHungUp { .. }) => {
            ("call.status", json!({"call_id": id, "status": "hung_up"}))
        }
        DomainEvent::Call(CallEvent::TranscriptSegmentAdded { segment }) => (
            "transcript.segment",
            json!({"call_id": id, "role": segment.role, "text": segment.text, "at": segment.at,
                   "seconds_from_start": segment.seconds_from_start}),
        ),
        DomainEvent::Call(CallEvent::FunctionCallHandled { invocation }) => (
            "call.action",
            json!({"call_id": id, "function": invocation.name, "action": invocation.action,
                   "reply": invocation.reply, "at": invocation.at}),
        ),
        DomainEvent::Call(CallEvent::CallEnded { report }) => (
            "call.ended",
            json!({"call_id": id, "ended_reason": report.ended_reason,
                   "duration_seconds": report.duration_seconds, "ended_at": report.ended_at}),
        ),
        DomainEvent::Call(CallEvent::CallProcessed { at }) => {
            ("call.processed", json!({"call_id": id, "processed_at": at}))
        }
        DomainEvent::Organization(OrganizationEvent::ContactCreated {
            contact_id,
            phone_number,
            name,
            ..
        }) => (
            "contact.created",
            json!({"contact_id": contact_id, "phone_number": phone_number, "name": name}),
        ),
        DomainEvent::Organization(OrganizationEvent::ContactUpdated {
            contact_id, name, ..
        }) => (
            "contact.updated",
            json!({"contact_id": contact_id, "name": name}),
        ),
        DomainEvent::Organization(OrganizationEvent::ContactDeleted { contact_id, .. }) => {
            ("contact.deleted", json!({"contact_id": contact_id}))
        }
        _ => return None,
    };
    Some(FeedEvent {
        organization_id,
        position: stored.position,
        kind,
        // When the event was appended: what "committed → received" is measured from.
        at: chrono::DateTime::from_timestamp_millis(stored.recorded_at)
            .unwrap_or(stored.metadata.received_at),
        data,
    })
}

/// Follows the log and broadcasts feed events, one channel per organization with clients
/// (an event wakes only its organization's streams).
pub struct Hub {
    channels: std::sync::Mutex<HashMap<String, broadcast::Sender<Arc<FeedEvent>>>>,
    /// Every event up to here has been broadcast (or was not for the feed).
    position: Arc<AtomicI64>,
}

impl Hub {
    /// Starts following the log from its current head, through the read models' shared
    /// reads (`feed`: in step with them, the hub reads nothing of its own) — except while
    /// the request path is busy and someone is watching: the shared feed then reads only every
    /// [`BUSY_READ_INTERVAL`](crate::foreground::BUSY_READ_INTERVAL) (bigger read-model
    /// batches), and a client must not wait for that, so the hub reads through a feed of its
    /// own, as often as the read models read when quiet.
    pub async fn start(
        store: EventStore,
        shared: Arc<projections::LogFeed>,
        foreground: Arc<crate::foreground::Foreground>,
    ) -> Result<Arc<Hub>, eventlog::StoreError> {
        let own = Arc::new(projections::LogFeed::new(
            store.clone(),
            crate::startup::PROJECTION_READ_INTERVAL,
        ));
        let head = store.head().await?;
        let from = match store.checkpoint_of(head).await? {
            Some(checkpoint) => checkpoint,
            None => Checkpoint::START,
        };
        let hub = Arc::new(Hub {
            channels: std::sync::Mutex::new(HashMap::new()),
            position: Arc::new(AtomicI64::new(from.position)),
        });
        let weak = Arc::downgrade(&hub);
        tokio::spawn(async move {
            let mut checkpoint = from;
            let mut wake = store.wake().subscribe();
            // The wake generation a read answers (`None` after a poll: read afresh).
            let mut seen = None;
            while let Some(hub) = weak.upgrade() {
                // Nobody watching: nobody waits, so the hub stays on the shared reads.
                let feed = if foreground.busy() && hub.clients() > 0 {
                    &own
                } else {
                    &shared
                };
                let read = feed.read_after(checkpoint, READ_SIZE, seen).await;
                let events = match read {
                    Ok(events) => events,
                    Err(err) => {
                        tracing::warn!(error = %err, "the live feed could not read the log");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let full = events.len() as i64 == READ_SIZE;
                for (stored, event) in events.iter() {
                    if let Some(feed) = feed_event(stored, event) {
                        hub.send(feed);
                    }
                    checkpoint = stored.checkpoint();
                    hub.position.store(stored.position, Ordering::Release);
                }
                drop(hub);
                seen = if full {
                    Some(store.wake().generation())
                } else {
                    // Woken by an append here, a notification from another process, or the
                    // poll that catches what no notification announced.
                    tokio::select! {
                        _ = wake.changed() => Some(store.wake().generation()),
                        _ = tokio::time::sleep(Duration::from_millis(250)) => None,
                    }
                };
            }
        });
        Ok(hub)
    }

    fn send(&self, event: FeedEvent) {
        let Ok(mut channels) = self.channels.lock() else {
            return;
        };
        let watched = match channels.get(&event.organization_id) {
            Some(tx) if tx.receiver_count() > 0 => {
                let _ = tx.send(Arc::new(event));
                true
            }
            Some(_) => false,
            // Nobody of this organization is watching.
            None => return,
        };
        if !watched {
            // Its last client left: the channel goes (a new client makes a new one).
            channels.retain(|_, tx| tx.receiver_count() > 0);
        }
    }

    /// A receiver of `organization`'s events from now on.
    pub fn subscribe(&self, organization: &str) -> broadcast::Receiver<Arc<FeedEvent>> {
        match self.channels.lock() {
            Ok(mut channels) => channels
                .entry(organization.to_string())
                .or_insert_with(|| broadcast::channel(BUFFER).0)
                .subscribe(),
            // A poisoned lock (a panic while sending) leaves a closed receiver: the stream ends.
            Err(_) => broadcast::channel(1).1,
        }
    }

    /// The position up to which everything has been broadcast.
    pub fn position(&self) -> i64 {
        self.position.load(Ordering::Acquire)
    }

    /// How many streams are open.
    pub fn clients(&self) -> usize {
        self.channels
            .lock()
            .map(|c| c.values().map(broadcast::Sender::receiver_count).sum())
            .unwrap_or(0)
    }
}
