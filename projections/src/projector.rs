//! The projector contract.

use aggregates::call::CallEvent;
use aggregates::organization::OrganizationEvent;
use aggregates::subscription::SubscriptionEvent;
use aggregates::user::UserEvent;
use async_trait::async_trait;
use eventlog::{StoreError, StoredEvent};
use sqlx::{Any, Transaction};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("read-model write failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("read-model value could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("rebuild failed: {0}")]
    Rebuild(String),
    #[error("event at position {position} cannot be decoded: {source}")]
    Decode {
        position: i64,
        source: serde_json::Error,
    },
}

/// An event of the log, decoded into the aggregate event it is.
#[derive(Debug, Clone)]
pub enum DomainEvent {
    Call(CallEvent),
    Organization(OrganizationEvent),
    Subscription(SubscriptionEvent),
    User(UserEvent),
    /// An aggregate type this build does not know (written by a newer version): skipped.
    Other,
}

impl DomainEvent {
    /// Decodes `payload` (the event's JSON text) straight into the aggregate's event type,
    /// with no JSON tree in between (what rebuilds spend most of their reading time on).
    pub fn decode_payload(event: &StoredEvent, payload: &str) -> Result<Self, ProjectionError> {
        let wrap = |source| ProjectionError::Decode {
            position: event.position,
            source,
        };
        Ok(match event.aggregate_type.as_str() {
            "call" => DomainEvent::Call(serde_json::from_str(payload).map_err(wrap)?),
            "organization" => {
                DomainEvent::Organization(serde_json::from_str(payload).map_err(wrap)?)
            }
            "subscription" => {
                DomainEvent::Subscription(serde_json::from_str(payload).map_err(wrap)?)
            }
            "user" => DomainEvent::User(serde_json::from_str(payload).map_err(wrap)?),
            _ => DomainEvent::Other,
        })
    }
}

/// Physical table names: the live tables, or the fresh set a rebuild writes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    suffix: &'static str,
}

impl Tables {
    pub const LIVE: Tables = Tables { suffix: "" };
    pub const REBUILD: Tables = Tables {
        suffix: "__rebuild",
    };

    pub fn name(&self, base: &str) -> String {
        format!("{base}{}", self.suffix)
    }
}

/// A read model built from the log. `apply` runs inside the batch's transaction and must be
/// idempotent per event only in the sense that the runner never applies an event twice: the
/// checkpoint commits with the changes.
#[async_trait]
pub trait Projector: Send + Sync {
    /// Stable name; also the checkpoint's name.
    fn name(&self) -> &'static str;

    /// The tables this projector owns (rebuilt and swapped together).
    fn tables(&self) -> &'static [&'static str];

    /// Whether `event` can change this read model. The live runner skips the write
    /// transaction of a batch holding none of them (most batches, for most projectors) and
    /// only moves its checkpoint in memory, persisting it later. Answering `true` for an
    /// event `apply` ignores is always safe; `false` for one it uses loses updates (the
    /// batched-vs-event-by-event projection test catches that).
    fn wants(&self, _event: &DomainEvent) -> bool {
        true
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        stored: &StoredEvent,
        event: &DomainEvent,
    ) -> Result<(), ProjectionError>;

    /// Applies a whole batch, in log order. Projectors override it to fold frequent events in
    /// memory and write once per row per batch (rebuilds replay millions of events).
    async fn apply_batch(
        &self,
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        events: &[(StoredEvent, DomainEvent)],
    ) -> Result<(), ProjectionError> {
        for (stored, event) in events {
            self.apply(tx, tables, stored, event).await?;
        }
        Ok(())
    }
}
