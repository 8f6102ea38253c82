//! The `transcripts` (one per call, the running text) and `transcript_segments` read models,
//! and `transcript_search`, the text full-text search reads (see migration 0004).

use aggregates::call::CallEvent;
use async_trait::async_trait;
use eventlog::StoredEvent;
use sqlx::{Any, Transaction};

use crate::projector::{DomainEvent, ProjectionError, Projector, Tables};
use crate::sql::{bind_f64, json_text, ms};

mod fold;

pub struct TranscriptsProjector;

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
        &["transcripts", "transcript_segments", "transcript_search"]
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
                let segments = tables.name("transcript_segments");
                let sql = format!(
                    "INSERT INTO {segments} (call_id, segment_key, organization_id, seq, role, \
                     text, at, seconds_from_start) SELECT $1, $2, organization_id, $3, $4, $5, \
                     $6, $7 FROM {transcripts} WHERE call_id = $1 \
                     ON CONFLICT (call_id, segment_key) DO NOTHING"
                );
                let query = sqlx::query(&sql)
                    .bind(id.clone())
                    .bind(segment.key.clone())
                    .bind(stored.sequence)
                    .bind(segment.role.clone())
                    .bind(segment.text.clone())
                    .bind(ms(&segment.at));
                bind_f64(query, segment.seconds_from_start)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(&format!(
                    "UPDATE {transcripts} SET full_text = full_text || $1, \
                     segment_count = segment_count + 1, updated_at = $2 WHERE call_id = $3"
                ))
                .bind(format!("{}: {}\n", segment.role, segment.text))
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
