//! What goes into the log and what comes out of it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Metadata carried by every event: who caused it, in answer to what, and when we received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub event_id: Uuid,
    /// Shared by every event produced while handling one delivery or request.
    pub correlation_id: Uuid,
    /// The event (or delivery) that caused this one, when known.
    pub causation_id: Option<Uuid>,
    /// `user:<id>`, `api_key:<id>`, `provider:<name>:<provider event id>` or `system:<part>`.
    pub actor: String,
    /// The organization the event belongs to (tenant), when there is one.
    pub tenant_id: Option<String>,
    pub received_at: DateTime<Utc>,
    /// Free-form extras (e.g. the raw delivery id that produced the event).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// The per-command half of the metadata; per-event ids are derived from it at append time.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandMeta {
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub actor: String,
    pub tenant_id: Option<String>,
    pub received_at: DateTime<Utc>,
    /// A client-chosen key: a retried command with the same key returns the first result
    /// instead of appending again.
    pub idempotency_key: Option<String>,
    pub extra: BTreeMap<String, String>,
}

impl CommandMeta {
    /// A command's metadata; its correlation (and causation) are inherited from the work it
    /// runs under ([`crate::context::within`]), else a new correlation id.
    pub fn new(actor: impl Into<String>) -> Self {
        let inherited = crate::context::current();
        Self {
            correlation_id: inherited.map_or_else(Uuid::new_v4, |c| c.correlation_id),
            causation_id: inherited.and_then(|c| c.causation_id),
            actor: actor.into(),
            tenant_id: None,
            received_at: Utc::now(),
            idempotency_key: None,
            extra: BTreeMap::new(),
        }
    }

    pub fn tenant(mut self, tenant: impl ToString) -> Self {
        self.tenant_id = Some(tenant.to_string());
        self
    }

    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    pub fn correlation(mut self, id: Uuid) -> Self {
        self.correlation_id = id;
        self
    }

    pub fn causation(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    pub fn extra(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Metadata for the `index`-th event of this command. With an idempotency key the event id
    /// is derived from it, so a replayed append collides on the unique event id as well.
    pub fn for_event(&self, index: usize) -> EventMetadata {
        let event_id = match &self.idempotency_key {
            Some(key) => keyed_event_id(key, index),
            None => Uuid::new_v4(),
        };
        EventMetadata {
            event_id,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            actor: self.actor.clone(),
            tenant_id: self.tenant_id.clone(),
            received_at: self.received_at,
            extra: self.extra.clone(),
        }
    }
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: String,
    pub event_version: i32,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
}

/// One transactional append to one stream.
#[derive(Debug, Clone)]
pub struct Append {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The stream's last sequence the writer saw (0 for a new stream).
    pub expected_version: i64,
    pub events: Vec<NewEvent>,
    pub idempotency_key: Option<String>,
    /// A snapshot written in the same transaction, at `expected_version + events.len()`.
    pub snapshot: Option<crate::snapshot::Snapshot>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Global position of the first and last event written (0 when nothing was written).
    pub first_position: i64,
    pub last_position: i64,
    /// The stream's version after the append.
    pub version: i64,
    /// True when an earlier append with the same idempotency key is being returned.
    pub duplicate: bool,
    pub event_count: i64,
}

/// An event as read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub position: i64,
    pub transaction_id: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: i32,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
    pub recorded_at: i64,
}

impl StoredEvent {
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            transaction_id: self.transaction_id,
            position: self.position,
        }
    }
}

/// A place in the commit-ordered log. Ordering is (transaction id, position): on PostgreSQL a
/// transaction's events are read together once every older transaction has finished; on SQLite
/// the transaction id is always 0 and the position alone orders.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Checkpoint {
    pub transaction_id: i64,
    pub position: i64,
}

impl Checkpoint {
    pub const START: Checkpoint = Checkpoint {
        transaction_id: 0,
        position: 0,
    };
}

/// The id of the `index`-th event of an append made under idempotency key `key`. The store
/// gives a keyed append's events these ids, so a replayed append collides on the unique event
/// id, and the first append's result is found again by them (no record of its own).
pub fn keyed_event_id(key: &str, index: usize) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("{key}#{index}").as_bytes())
}
