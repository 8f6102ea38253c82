//! A process's starter: a consumer of the log (a [`Projector`] to the runner, of the
//! process kind) whose only write is the instances to start, committed with its checkpoint.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use eventlog::{Checkpoint, StoredEvent};
use projections::{DomainEvent, ProjectionError, Projector, Tables};
use sqlx::{Any, Transaction};

use super::work::{insert_starts, Cause, Start, Started};
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
        self.record(tx, &[(stored, starts)]).await
    }

    /// The whole batch's starts in one statement (and the definition's own lookups once per
    /// batch where it has some): the starter's statements no longer grow with its events.
    async fn apply_batch(
        &self,
        tx: &mut Transaction<'static, Any>,
        _tables: Tables,
        events: &[(StoredEvent, DomainEvent)],
    ) -> Result<(), ProjectionError> {
        let starts = self.definition.start_batch(tx, events).await?;
        let started: Vec<(&StoredEvent, Vec<Start>)> = events
            .iter()
            .map(|(stored, _)| stored)
            .zip(starts)
            .collect();
        self.record(tx, &started).await
    }
}

impl Starter {
    /// Records the instances each event started, in log order.
    async fn record(
        &self,
        tx: &mut Transaction<'static, Any>,
        started: &[(&StoredEvent, Vec<Start>)],
    ) -> Result<(), ProjectionError> {
        let rows: Vec<Started> = started
            .iter()
            .flat_map(|(stored, starts)| {
                let cause = Cause {
                    correlation_id: stored.metadata.correlation_id,
                    event_id: stored.metadata.event_id,
                };
                starts.iter().map(move |start| Started {
                    seq: stored.position,
                    cause: Some(cause),
                    start,
                })
            })
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        insert_starts(tx, self.definition.kind(), &rows).await?;
        if let Some((stored, _)) = started.iter().rev().find(|(_, starts)| !starts.is_empty()) {
            self.started.started_at(stored.checkpoint());
        }
        Ok(())
    }
}
