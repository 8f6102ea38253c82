//! The `transcripts` read model (one row per call: its segments in order, the running text,
//! VAPI's final text) and `transcript_search`, the text full-text search reads (migration
//! 0004).
//!
//! Segments live in the call's row as a JSON array (migration 0012), not one row each: they
//! are only ever read per call, and a row per segment was three quarters of a rebuild's
//! transcript cost (measured: the rebuild went from 40k to 61k events/s without them).

use aggregates::call::{CallEvent, TranscriptSegment};
use async_trait::async_trait;
use eventlog::StoredEvent;
use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction};

use crate::projector::{DomainEvent, ProjectionError, Projector, Tables};
use crate::sql::{json_text, ms};

mod fold;

pub struct TranscriptsProjector;

/// One element of `transcripts.segments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub key: String,
    /// The event's sequence in the call's stream (the order segments ARRIVED in; the list
    /// itself is in conversation order).
    pub seq: i64,
    pub role: String,
    pub text: String,
    /// Epoch milliseconds.
    pub at: i64,
    pub seconds_from_start: Option<f64>,
}

impl Segment {
    fn new(stored: &StoredEvent, segment: &TranscriptSegment) -> Self {
        Self {
            key: segment.key.clone(),
            seq: stored.sequence,
            role: segment.role.clone(),
            text: segment.text.clone(),
            at: ms(&segment.at),
            seconds_from_start: segment.seconds_from_start,
        }
    }
}

/// Parses a `segments` column (JSON array text).
pub fn parse_segments(text: &str) -> Result<Vec<Segment>, serde_json::Error> {
    serde_json::from_str(text)
}

/// Adds `segment` unless one with its key is there already (first write wins), in
/// conversation order: by the segment's own time, ties by its key. Deliveries arrive
/// overlapped, shuffled and repeated; the transcript must not depend on that.
fn add_segment(segments: &mut Vec<Segment>, segment: Segment) {
    if segments.iter().any(|s| s.key == segment.key) {
        return;
    }
    let place = segments.partition_point(|s| (s.at, s.key.as_str()) <= (segment.at, &segment.key));
    segments.insert(place, segment);
}

/// The running text: one `role: text` line per segment, in conversation order.
fn running_text(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| format!("{}: {}\n", s.role, s.text))
        .collect()
}

/// Replaces the call's row in `transcript_search` with its current searchable text (the final
/// transcript when known, else the running text). Delete + insert: the SQLite table is FTS5,
/// which has no unique constraint to upsert on.
async fn reindex(
    tx: &mut Transaction<'static, Any>,
    tables: Tables,
    call_id: &str,
) -> Result<(), ProjectionError> {
    let transcripts = tables.name("transcripts");
    let search = tables.name("transcript_search");
    sqlx::query(&format!("DELETE FROM {search} WHERE call_id = $1"))
        .bind(call_id.to_string())
        .execute(&mut **tx)
        .await?;
    sqlx::query(&format!(
        "INSERT INTO {search} (call_id, organization_id, body) SELECT call_id, \
         organization_id, COALESCE(NULLIF(final_text, ''), full_text) FROM {transcripts} \
         WHERE call_id = $1"
    ))
    .bind(call_id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Stores the end report's transcript and messages (search is re-indexed by the caller).
async fn record_end(
    tx: &mut Transaction<'static, Any>,
    tables: Tables,
    stored: &StoredEvent,
    report: &aggregates::call::EndReport,
) -> Result<(), ProjectionError> {
    let transcripts = tables.name("transcripts");
    sqlx::query(&format!(
        "UPDATE {transcripts} SET final_text = COALESCE($1, final_text), \
         messages = COALESCE($2, messages), updated_at = $3 WHERE call_id = $4"
    ))
    .bind(report.transcript.clone())
    .bind(json_text(&report.messages))
    .bind(stored.recorded_at)
    .bind(stored.aggregate_id.clone())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Projector for TranscriptsProjector {
    fn name(&self) -> &'static str {
        "transcripts"
    }

    fn wants(&self, event: &DomainEvent) -> bool {
        matches!(
            event,
            DomainEvent::Call(
                CallEvent::CallStarted { .. }
                    | CallEvent::TranscriptSegmentAdded { .. }
                    | CallEvent::CallEnded { .. }
            )
        )
    }

    fn tables(&self) -> &'static [&'static str] {
        &["transcripts", "transcript_search"]
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        stored: &StoredEvent,
        event: &DomainEvent,
    ) -> Result<(), ProjectionError> {
        let DomainEvent::Call(event) = event else {
            return Ok(());
        };
        let transcripts = tables.name("transcripts");
        let id = stored.aggregate_id.clone();
        match event {
            CallEvent::CallStarted {
                organization_id, ..
            } => {
                sqlx::query(&format!(
                    "INSERT INTO {transcripts} (call_id, organization_id, updated_at) \
                     VALUES ($1, $2, $3) ON CONFLICT (call_id) DO NOTHING"
                ))
                .bind(id)
                .bind(organization_id.to_string())
                .bind(stored.recorded_at)
                .execute(&mut **tx)
                .await?;
            }
            CallEvent::TranscriptSegmentAdded { segment } => {
                // Without a row (no CallStarted yet) there is nothing to add to.
                let row = sqlx::query(&format!(
                    "SELECT segments FROM {transcripts} WHERE call_id = $1"
                ))
                .bind(id.clone())
                .fetch_optional(&mut **tx)
                .await?;
                let Some(row) = row else {
                    return Ok(());
                };
                let text: String = row.try_get(0)?;
                let mut segments = parse_segments(&text)?;
                add_segment(&mut segments, Segment::new(stored, segment));
                sqlx::query(&format!(
                    "UPDATE {transcripts} SET segments = $1, full_text = $2, \
                     segment_count = segment_count + 1, updated_at = $3 WHERE call_id = $4"
                ))
                .bind(serde_json::to_string(&segments)?)
                .bind(running_text(&segments))
                .bind(stored.recorded_at)
                .bind(id.clone())
                .execute(&mut **tx)
                .await?;
                reindex(tx, tables, &id).await?;
            }
            CallEvent::CallEnded { report } => {
                record_end(tx, tables, stored, report).await?;
                reindex(tx, tables, &id).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Folds the batch in memory: one read and a few multi-row writes (see [`fold`]).
    async fn apply_batch(
        &self,
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        events: &[(StoredEvent, DomainEvent)],
    ) -> Result<(), ProjectionError> {
        fold::apply_batch(tx, tables, events).await
    }
}

#[cfg(test)]
mod order_tests {
    use proptest::prelude::*;

    use super::{add_segment, running_text, Segment};

    fn segment(i: usize, at: i64) -> Segment {
        Segment {
            key: format!("k{i:03}"),
            seq: i as i64 + 1,
            role: if i.is_multiple_of(2) {
                "user"
            } else {
                "assistant"
            }
            .into(),
            text: format!("line {i}"),
            at,
            seconds_from_start: None,
        }
    }

    fn fold(order: &[Segment]) -> Vec<Segment> {
        let mut segments = Vec::new();
        for s in order {
            add_segment(&mut segments, s.clone());
        }
        segments
    }

    fn view(segments: &[Segment]) -> Vec<(String, i64)> {
        segments.iter().map(|s| (s.key.clone(), s.at)).collect()
    }

    proptest! {
        /// Whatever order the deliveries arrive in, and however often each is repeated, the
        /// transcript is the in-order one: segments by their own time (ties by key), the
        /// running text built from them.
        #[test]
        fn transcripts_do_not_depend_on_arrival_order_or_repeats(
            times in proptest::collection::vec(0i64..40, 1..40),
            picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
            seed in any::<u64>(),
        ) {
            // Times with ties (0..40 for up to 40 segments), in conversation order.
            let mut times = times;
            times.sort_unstable();
            let in_order: Vec<Segment> =
                times.iter().enumerate().map(|(i, at)| segment(i, *at)).collect();
            // Every segment once plus some repeated, shuffled (a seeded Fisher-Yates).
            let mut arrived = in_order.clone();
            arrived.extend(picks.iter().map(|p| in_order[p.index(in_order.len())].clone()));
            let mut state = seed | 1;
            for i in (1..arrived.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                arrived.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let expected = fold(&in_order);
            let got = fold(&arrived);
            prop_assert_eq!(view(&got), view(&expected));
            prop_assert_eq!(running_text(&got), running_text(&expected));
        }
    }
}
