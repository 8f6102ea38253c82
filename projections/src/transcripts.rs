//! The `transcripts` (one per call, the running text) and `transcript_segments` read models,
//! and `transcript_search`, the text full-text search reads (see migration 0004).

use std::collections::{BTreeMap, BTreeSet};

use aggregates::call::{CallEvent, TranscriptSegment};
use async_trait::async_trait;
use eventlog::StoredEvent;
use sqlx::{Any, Transaction};

use crate::projector::{DomainEvent, ProjectionError, Projector, Tables};
use crate::sql::{bind_f64, json_text, ms};

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

/// Segment rows per multi-row INSERT (8 parameters each).
const SEGMENT_ROWS_PER_INSERT: usize = 400;

/// What one batch adds to one call's transcript, written once at the end of the batch.
#[derive(Default)]
struct Appended {
    text: String,
    count: i64,
    updated_at: i64,
}

struct SegmentRow<'a> {
    call_id: &'a str,
    organization_id: String,
    seq: i64,
    segment: &'a TranscriptSegment,
}

impl TranscriptsProjector {
    /// The organization of `call_id`: from a `CallStarted` in this batch, else from the row.
    async fn organization_of(
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        known: &mut BTreeMap<String, String>,
        call_id: &str,
    ) -> Result<String, ProjectionError> {
        if let Some(org) = known.get(call_id) {
            return Ok(org.clone());
        }
        let transcripts = tables.name("transcripts");
        let org: Option<String> = sqlx::query_scalar(&format!(
            "SELECT organization_id FROM {transcripts} WHERE call_id = $1"
        ))
        .bind(call_id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
        let org = org.unwrap_or_default();
        known.insert(call_id.to_string(), org.clone());
        Ok(org)
    }

    async fn insert_segments(
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        rows: &[SegmentRow<'_>],
    ) -> Result<(), ProjectionError> {
        let segments = tables.name("transcript_segments");
        for chunk in rows.chunks(SEGMENT_ROWS_PER_INSERT) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = i * 8;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6,
                        b + 7,
                        b + 8
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO {segments} (call_id, segment_key, organization_id, seq, role, text,                  at, seconds_from_start) VALUES {} ON CONFLICT (call_id, segment_key) DO NOTHING",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for row in chunk {
                query = query
                    .bind(row.call_id.to_string())
                    .bind(row.segment.key.clone())
                    .bind(row.organization_id.clone())
                    .bind(row.seq)
                    .bind(row.segment.role.clone())
                    .bind(row.segment.text.clone())
                    .bind(ms(&row.segment.at));
                query = bind_f64(query, row.segment.seconds_from_start);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Projector for TranscriptsProjector {
    fn name(&self) -> &'static str {
        "transcripts"
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

    /// Folds a batch: segments go in with multi-row INSERTs, each call's text is appended once,
    /// and each touched call is re-indexed for search once (not once per segment).
    async fn apply_batch(
        &self,
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        events: &[(StoredEvent, DomainEvent)],
    ) -> Result<(), ProjectionError> {
        let mut organizations: BTreeMap<String, String> = BTreeMap::new();
        let mut appended: BTreeMap<&str, Appended> = BTreeMap::new();
        let mut rows: Vec<SegmentRow<'_>> = Vec::new();
        let mut touched: BTreeSet<&str> = BTreeSet::new();
        for (stored, event) in events {
            let DomainEvent::Call(call_event) = event else {
                continue;
            };
            let call_id = stored.aggregate_id.as_str();
            match call_event {
                CallEvent::TranscriptSegmentAdded { segment } => {
                    let organization_id =
                        Self::organization_of(tx, tables, &mut organizations, call_id).await?;
                    rows.push(SegmentRow {
                        call_id,
                        organization_id,
                        seq: stored.sequence,
                        segment,
                    });
                    let entry = appended.entry(call_id).or_default();
                    entry
                        .text
                        .push_str(&format!("{}: {}\n", segment.role, segment.text));
                    entry.count += 1;
                    entry.updated_at = stored.recorded_at;
                    touched.insert(call_id);
                }
                CallEvent::CallStarted {
                    organization_id, ..
                } => {
                    organizations.insert(call_id.to_string(), organization_id.to_string());
                    self.apply(tx, tables, stored, event).await?;
                }
                CallEvent::CallEnded { report } => {
                    // Re-indexed once with the batch's other touched calls below.
                    record_end(tx, tables, stored, report).await?;
                    touched.insert(call_id);
                }
                _ => {}
            }
        }
        Self::insert_segments(tx, tables, &rows).await?;
        let transcripts = tables.name("transcripts");
        for (call_id, add) in &appended {
            sqlx::query(&format!(
                "UPDATE {transcripts} SET full_text = full_text || $1, \
                 segment_count = segment_count + $2, \
                 updated_at = CASE WHEN updated_at > $3 THEN updated_at ELSE $3 END \
                 WHERE call_id = $4"
            ))
            .bind(add.text.clone())
            .bind(add.count)
            .bind(add.updated_at)
            .bind(call_id.to_string())
            .execute(&mut **tx)
            .await?;
        }
        for call_id in touched {
            reindex(tx, tables, call_id).await?;
        }
        Ok(())
    }
}
