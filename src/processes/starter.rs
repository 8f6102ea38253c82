//! A process's starter: a consumer of the log (a [`Projector`] to the runner, of the
//! process kind) whose only write is the instances to start, committed with its checkpoint.

use std::sync::Arc;

use async_trait::async_trait;
use eventlog::StoredEvent;
use projections::{DomainEvent, ProjectionError, Projector, Tables};
use sqlx::{Any, Transaction};

use super::ProcessDefinition;

pub struct Starter {
    pub definition: Arc<dyn ProcessDefinition>,
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
        }
        Ok(())
    }
}
