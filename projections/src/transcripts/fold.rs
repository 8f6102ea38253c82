//! The transcripts read models folded in memory: a batch loads the transcript rows of the
//! calls it touches (segments included), applies every event in log order, and writes the rows
//! and the search rows of the touched calls with one multi-row statement each. Same results
//! as the per-event SQL in the parent module (a test compares them).

use std::collections::{HashMap, HashSet};

use aggregates::call::CallEvent;
use eventlog::StoredEvent;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{add_segment, parse_segments, running_text, Segment};
use crate::batch::{fetch_in, insert_rows, replace_all, Cell};
use crate::projector::{DomainEvent, ProjectionError, Tables};
use crate::sql::json_text;

const COLUMNS: [&str; 8] = [
    "call_id",
    "organization_id",
    "full_text",
    "final_text",
    "messages",
    "segment_count",
    "updated_at",
    "segments",
];

/// One `transcripts` row.
struct TranscriptRow {
    call_id: String,
    organization_id: String,
    full_text: String,
    final_text: Option<String>,
    messages: Option<String>,
    segment_count: i64,
    updated_at: i64,
    segments: Vec<Segment>,
}

impl TranscriptRow {
    fn from_row(row: &AnyRow) -> Result<Self, ProjectionError> {
        let segments: String = row.try_get(7)?;
        Ok(Self {
            call_id: row.try_get(0)?,
            organization_id: row.try_get(1)?,
            full_text: row.try_get(2)?,
            final_text: row.try_get(3)?,
            messages: row.try_get(4)?,
            segment_count: row.try_get(5)?,
            updated_at: row.try_get(6)?,
            segments: parse_segments(&segments)?,
        })
    }

    /// What search indexes: the final transcript when known, else the running text.
    fn searchable(&self) -> String {
        match self.final_text.as_deref() {
            Some(text) if !text.is_empty() => text.to_string(),
            _ => self.full_text.clone(),
        }
    }

    fn cells(&self) -> Result<Vec<Cell>, ProjectionError> {
        Ok(vec![
            self.call_id.clone().into(),
            self.organization_id.clone().into(),
            self.full_text.clone().into(),
            self.final_text.clone().into(),
            self.messages.clone().into(),
            self.segment_count.into(),
            self.updated_at.into(),
            serde_json::to_string(&self.segments)?.into(),
        ])
    }
}

/// Folds `events` into the transcripts tables.
pub async fn apply_batch(
    tx: &mut Transaction<'static, Any>,
    tables: Tables,
    events: &[(StoredEvent, DomainEvent)],
) -> Result<(), ProjectionError> {
    let transcripts = tables.name("transcripts");
    let mut ids: Vec<String> = events
        .iter()
        .filter(|(_, event)| {
            matches!(
                event,
                DomainEvent::Call(
                    CallEvent::CallStarted { .. }
                        | CallEvent::TranscriptSegmentAdded { .. }
                        | CallEvent::CallEnded { .. }
                )
            )
        })
        .map(|(stored, _)| stored.aggregate_id.clone())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let select = format!(
        "SELECT {} FROM {transcripts} WHERE call_id IN ",
        COLUMNS.join(", ")
    );
    let mut rows: HashMap<String, TranscriptRow> = HashMap::new();
    for row in fetch_in(tx, &select, &ids).await? {
        let row = TranscriptRow::from_row(&row)?;
        rows.insert(row.call_id.clone(), row);
    }

    let mut dirty: HashSet<String> = HashSet::new();
    let mut reindex: HashSet<String> = HashSet::new();
    for (stored, event) in events {
        let DomainEvent::Call(event) = event else {
            continue;
        };
        let id = &stored.aggregate_id;
        match event {
            CallEvent::CallStarted {
                organization_id, ..
            } if !rows.contains_key(id) => {
                rows.insert(
                    id.clone(),
                    TranscriptRow {
                        call_id: id.clone(),
                        organization_id: organization_id.to_string(),
                        full_text: String::new(),
                        final_text: None,
                        messages: None,
                        segment_count: 0,
                        updated_at: stored.recorded_at,
                        segments: Vec::new(),
                    },
                );
                dirty.insert(id.clone());
            }
            CallEvent::TranscriptSegmentAdded { segment } => {
                // Without a transcript row the per-event SQL changes nothing either.
                let Some(row) = rows.get_mut(id) else {
                    continue;
                };
                add_segment(&mut row.segments, Segment::new(stored, segment));
                row.segment_count += 1;
                row.updated_at = stored.recorded_at;
                dirty.insert(id.clone());
                reindex.insert(id.clone());
            }
            CallEvent::CallEnded { report } => {
                let Some(row) = rows.get_mut(id) else {
                    continue;
                };
                if report.transcript.is_some() {
                    row.final_text.clone_from(&report.transcript);
                }
                if let Some(messages) = json_text(&report.messages) {
                    row.messages = Some(messages);
                }
                row.updated_at = stored.recorded_at;
                dirty.insert(id.clone());
                reindex.insert(id.clone());
            }
            _ => {}
        }
    }

    let mut dirty: Vec<String> = dirty.into_iter().collect();
    dirty.sort_unstable();
    // The running text follows the segments' order, which a late segment can change
    // anywhere: rebuilt once per call and batch.
    for id in &dirty {
        if let Some(row) = rows.get_mut(id) {
            row.full_text = running_text(&row.segments);
        }
    }
    let written: Vec<Vec<Cell>> = dirty
        .iter()
        .filter_map(|id| rows.get(id))
        .map(TranscriptRow::cells)
        .collect::<Result<_, _>>()?;
    insert_rows(
        tx,
        &transcripts,
        &COLUMNS,
        written,
        &replace_all(&COLUMNS, &["call_id"]),
    )
    .await?;
    // Search rows are replaced (delete + insert: SQLite's FTS5 table has no key to upsert on).
    let mut reindex: Vec<String> = reindex.into_iter().collect();
    reindex.sort_unstable();
    let search = tables.name("transcript_search");
    delete_in(tx, &search, &reindex).await?;
    let bodies: Vec<Vec<Cell>> = reindex
        .iter()
        .filter_map(|id| rows.get(id))
        .map(|row| {
            vec![
                row.call_id.clone().into(),
                row.organization_id.clone().into(),
                row.searchable().into(),
            ]
        })
        .collect();
    insert_rows(
        tx,
        &search,
        &["call_id", "organization_id", "body"],
        bodies,
        "",
    )
    .await?;
    Ok(())
}

async fn delete_in(
    tx: &mut Transaction<'static, Any>,
    table: &str,
    call_ids: &[String],
) -> Result<(), ProjectionError> {
    for chunk in call_ids.chunks(crate::batch::max_parameters(tx)) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "DELETE FROM {table} WHERE call_id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.clone());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
