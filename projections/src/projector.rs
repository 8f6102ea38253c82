//! The projector contract.

use aggregates::call::CallEvent;
use aggregates::organization::OrganizationEvent;
use aggregates::process::ProcessEvent;
use aggregates::schedule::ScheduleEvent;
use aggregates::subscription::SubscriptionEvent;
use aggregates::user::UserEvent;
use async_trait::async_trait;
use eventlog::{StoreError, StoredEvent, Upcasters};
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
    /// A durable process's progress (`aggregates::process`).
    Process(ProcessEvent),
    /// A cron schedule's registration and runs (`aggregates::schedule`).
    Schedule(ScheduleEvent),
    /// An aggregate type this build does not know (written by a newer version): skipped.
    Other,
}

impl DomainEvent {
    /// Decodes `payload` (the event's JSON text) into the aggregate's event type, upcasting
    /// old versions with [`crate::upcasting::all`] first, as the repositories do.
    pub fn decode_payload(event: &StoredEvent, payload: &str) -> Result<Self, ProjectionError> {
        Self::decode_with(event, payload, crate::upcasting::all())
    }

    /// [`decode_payload`](Self::decode_payload) with the given upcasters. An event at a
    /// current version goes straight from text to type, with no JSON tree in between (what
    /// rebuilds spend most of their reading time on).
    pub fn decode_with(
        event: &StoredEvent,
        payload: &str,
        upcasters: &Upcasters,
    ) -> Result<Self, ProjectionError> {
        let wrap = |source| ProjectionError::Decode {
            position: event.position,
            source,
        };
        // Old versions are lifted as JSON, then take the same typed path as current ones.
        let upcast;
        let payload = if upcasters.applies(&event.event_type, event.event_version) {
            let old: serde_json::Value = serde_json::from_str(payload).map_err(wrap)?;
            upcast = upcasters
                .upcast(&event.event_type, event.event_version, old)
                .to_string();
            upcast.as_str()
        } else {
            payload
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
            "process" => DomainEvent::Process(serde_json::from_str(payload).map_err(wrap)?),
            "schedule" => DomainEvent::Schedule(serde_json::from_str(payload).map_err(wrap)?),
            _ => DomainEvent::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::call::CallEvent;
    use eventlog::{EventMetadata, Upcasters};

    fn stored(event_type: &str, version: i32) -> StoredEvent {
        StoredEvent {
            position: 7,
            transaction_id: 0,
            aggregate_type: "call".into(),
            aggregate_id: "c1".into(),
            sequence: 3,
            event_type: event_type.into(),
            event_version: version,
            payload: serde_json::Value::Null,
            metadata: EventMetadata {
                event_id: uuid::Uuid::nil(),
                correlation_id: uuid::Uuid::nil(),
                causation_id: None,
                actor: "system:test".into(),
                tenant_id: None,
                received_at: chrono::Utc::now(),
                extra: Default::default(),
            },
            recorded_at: 0,
        }
    }

    #[test]
    fn an_old_event_version_is_upcast_before_projectors_see_it() {
        // Version 0 of CallHungUp called its time `when`.
        let upcasters = Upcasters::new().register("CallHungUp", 0, |mut payload| {
            if let Some(body) = payload
                .get_mut("CallHungUp")
                .and_then(|b| b.as_object_mut())
            {
                if let Some(when) = body.remove("when") {
                    body.insert("at".into(), when);
                }
            }
            payload
        });
        let old = r#"{"CallHungUp":{"when":"2025-06-10T09:00:05Z"}}"#;
        let decoded = DomainEvent::decode_with(&stored("CallHungUp", 0), old, &upcasters).unwrap();
        let DomainEvent::Call(CallEvent::CallHungUp { at }) = decoded else {
            panic!("decoded {decoded:?}");
        };
        assert_eq!(at.to_rfc3339(), "2025-06-10T09:00:05+00:00");

        // The current version takes the direct path and is untouched.
        let current = r#"{"CallHungUp":{"at":"2025-06-10T09:00:05Z"}}"#;
        assert!(DomainEvent::decode_with(&stored("CallHungUp", 1), current, &upcasters).is_ok());
        // Without the upcaster the old shape is a decode error naming the position.
        let err =
            DomainEvent::decode_with(&stored("CallHungUp", 0), old, &Upcasters::new()).unwrap_err();
        assert!(err.to_string().contains("position 7"), "{err}");
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
    /// An analyst's replay of a slice of the log (`callflex replay`): built, never swapped in.
    pub const REPLAY: Tables = Tables { suffix: "__replay" };

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
