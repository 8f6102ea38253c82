//! A process's starter: a consumer of the log (a [`Projector`] to the runner, of the
//! process kind) whose only write is the instances to start, committed with its checkpoint.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use eventlog::{Checkpoint, StoredEvent};
use projections::{DomainEvent, ProjectionError, Projector, Tables};
use sqlx::{Any, Transaction};

use super::ProcessDefinition;

pub struct Starter {
    pub definition: Arc<dyn ProcessDefinition>,
    started: Arc<StartMark>,
}

/// Where in the log the starter last started instances: its worker looks for due instances
/// when that part of the log has been committed, not on every batch the starter reads (the
/// due query was the ingest's most frequent statement: five workers, every batch).
#[derive(Default)]
pub struct StartMark(Mutex<Checkpoint>);

impl StartMark {
    /// The checkpoint of the last event that started instances (possibly not yet committed).
    pub fn last(&self) -> Checkpoint {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn started_at(&self, at: Checkpoint) {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *last = (*last).max(at);
    }
}

impl Starter {
    pub fn new(definition: Arc<dyn ProcessDefinition>) -> Self {
        Starter {
            definition,
            started: Arc::default(),
        }
    }

    /// Shared with the process's worker.
    pub fn mark(&self) -> Arc<StartMark> {
        self.started.clone()
    }
}

#[async_trait]
impl Projector for Starter {
    fn name(&self) -> &'static str {
        self.definition.consumer()
    }

    /// None: a rebuild never touches a process (it would start everything again).
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn wants(&self, event: &DomainEvent) -> bool {
        self.definition.wants(event)
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        _tables: Tables,
        stored: &StoredEvent,
        event: &DomainEvent,
    ) -> Result<(), ProjectionError> {
        let starts = self.definition.start(tx, stored, event).await?;
        if !starts.is_empty() {
            let cause = super::work::Cause {
                correlation_id: stored.metadata.correlation_id,
                event_id: stored.metadata.event_id,
            };
            super::work::insert_starts(
                tx,
                self.definition.kind(),
                stored.position,
                Some(cause),
                &starts,
            )
            .await?;
            self.started.started_at(stored.checkpoint());
        }
        Ok(())
    }
}
