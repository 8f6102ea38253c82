//! Replaying stored raw deliveries through the same ingest path (`callflex redeliver`): each
//! delivery enters after its authentication (it was authenticated when first received) and
//! runs the same commands under the same idempotency keys. Into the same store it records
//! nothing new; into a fresh store (after the organizations it names are copied there, so
//! the deliveries find their tenant) it rebuilds the same calls.

use eventlog::{Append, EventStore, NewEvent};
use uuid::Uuid;

use super::stored::StoredDelivery;
use super::{stripe, twilio, vapi};
use crate::app::AppError;
use crate::state::AppState;

/// What a redelivery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Redelivered {
    pub deliveries: usize,
    /// Deliveries that recorded new events, and how many.
    pub recorded: usize,
    pub events: i64,
    /// Deliveries that changed nothing (already recorded: the idempotent case).
    pub nothing_new: usize,
    /// Deliveries of a provider that cannot be replayed (they are listed, not replayed).
    pub skipped: Vec<String>,
    /// Deliveries that failed, with the reason.
    pub failed: Vec<String>,
}

/// Replays `deliveries` in order into `state`'s store.
pub async fn redeliver(state: &AppState, deliveries: &[StoredDelivery]) -> Redelivered {
    let mut report = Redelivered {
        deliveries: deliveries.len(),
        ..Default::default()
    };
    for delivery in deliveries {
        let label = format!("{}:{}", delivery.provider, delivery.key);
        match replay(state, delivery).await {
            Ok(Some(outcome)) if outcome.event_count > 0 => {
                report.recorded += 1;
                report.events += outcome.event_count;
            }
            Ok(Some(_)) => report.nothing_new += 1,
            Ok(None) => report.skipped.push(label),
            Err(err) => report.failed.push(format!("{label}: {}", err.message)),
        }
    }
    report
}

async fn replay(
    state: &AppState,
    delivery: &StoredDelivery,
) -> Result<Option<super::Outcome>, AppError> {
    let content_type = delivery.content_type.as_deref();
    let body = delivery.body.as_bytes();
    Ok(Some(match delivery.provider.as_str() {
        "vapi" => {
            let org = delivery
                .organization_id
                .as_deref()
                .and_then(|o| Uuid::parse_str(o).ok())
                .ok_or_else(|| AppError::internal("a VAPI delivery without its organization"))?;
            let (organization, _) = state.organizations.load(&org.to_string()).await?;
            vapi::accept(state, org, &organization, content_type, body).await?
        }
        "twilio" => twilio::accept(state, content_type, body).await?,
        "stripe" => stripe::accept(state, content_type, body).await?,
        _ => return Ok(None),
    }))
}

/// Copies each organization's stream from `source` into `target` where `target` does not
/// have it yet (the same events, ids and metadata): a delivery needs its tenant to exist.
/// Answers how many streams were copied.
pub async fn copy_organizations(
    source: &EventStore,
    target: &EventStore,
    organizations: &[String],
) -> Result<usize, eventlog::StoreError> {
    let mut copied = 0;
    for org in organizations {
        if !target
            .read_stream_page("organization", org, 0, 1)
            .await?
            .is_empty()
        {
            continue;
        }
        let events = source.read_stream("organization", org, 0).await?;
        if events.is_empty() {
            continue;
        }
        target
            .append(Append {
                aggregate_type: "organization".into(),
                aggregate_id: org.clone(),
                expected_version: 0,
                events: events
                    .into_iter()
                    .map(|e| NewEvent {
                        event_type: e.event_type,
                        event_version: e.event_version,
                        payload: e.payload,
                        metadata: e.metadata,
                    })
                    .collect(),
                idempotency_key: None,
                snapshot: None,
            })
            .await?;
        copied += 1;
    }
    Ok(copied)
}
