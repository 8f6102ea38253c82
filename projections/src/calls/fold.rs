//! The calls read model folded in memory: a batch loads the rows of the calls it touches
//! (those not started in the batch), applies every event to them in log order, and writes each
//! row and the new actions back in one multi-row statement each. Same results as the
//! per-event SQL in the parent module (a test compares them), a fraction of the round trips.

use std::collections::HashMap;

use aggregates::call::{CallEvent, CallStatus, Direction};
use eventlog::StoredEvent;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{action_status, action_type};
use crate::batch::{fetch_in, insert_rows, replace_all, Cell};
use crate::projector::{DomainEvent, ProjectionError, Tables};
use crate::sql::{json_text, ms, opt_ms};

const COLUMNS: [&str; 32] = [
    "id",
    "organization_id",
    "vapi_call_id",
    "provider_call_id",
    "direction",
    "status",
    "from_number",
    "to_number",
    "phone_number_id",
    "assistant_id",
    "started_at",
    "ended_at",
    "duration_seconds",
    "ended_reason",
    "cost",
    "cost_breakdown",
    "summary",
    "success_evaluation",
    "structured_data",
    "call_type",
    "sentiment",
    "caller_name",
    "action_items",
    "recording_url",
    "stereo_recording_url",
    "has_recording",
    "hung_up",
    "processed",
    "segment_count",
    "action_count",
    "action_types",
    "last_position",
];

const ACTION_COLUMNS: [&str; 10] = [
    "call_id",
    "tool_call_id",
    "organization_id",
    "name",
    "action_type",
    "action_data",
    "arguments",
    "reply",
    "status",
    "at",
];

pub fn direction_name(direction: &Direction) -> &'static str {
    match direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
        Direction::Web => "web",
    }
}

pub fn status_name(status: &CallStatus) -> &'static str {
    match status {
        CallStatus::Scheduled => "scheduled",
        CallStatus::Queued => "queued",
        CallStatus::Ringing => "ringing",
        CallStatus::InProgress => "in-progress",
        CallStatus::Forwarding => "forwarding",
        CallStatus::Ended => "ended",
    }
}

/// One `calls` row.
#[derive(Debug, Clone, Default)]
struct CallRow {
    id: String,
    organization_id: String,
    vapi_call_id: String,
    provider_call_id: Option<String>,
    direction: String,
    status: String,
    from_number: Option<String>,
    to_number: Option<String>,
    phone_number_id: Option<String>,
    assistant_id: Option<String>,
    started_at: i64,
    ended_at: Option<i64>,
    duration_seconds: Option<f64>,
    ended_reason: Option<String>,
    cost: Option<f64>,
    cost_breakdown: Option<String>,
    summary: Option<String>,
    success_evaluation: Option<String>,
    structured_data: Option<String>,
    call_type: Option<String>,
    sentiment: Option<String>,
    caller_name: Option<String>,
    action_items: Option<String>,
    recording_url: Option<String>,
    stereo_recording_url: Option<String>,
    has_recording: i64,
    hung_up: i64,
    processed: i64,
    segment_count: i64,
    action_count: i64,
    action_types: String,
    last_position: i64,
}

impl CallRow {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get(0)?,
            organization_id: row.try_get(1)?,
            vapi_call_id: row.try_get(2)?,
            provider_call_id: row.try_get(3)?,
            direction: row.try_get(4)?,
            status: row.try_get(5)?,
            from_number: row.try_get(6)?,
            to_number: row.try_get(7)?,
            phone_number_id: row.try_get(8)?,
            assistant_id: row.try_get(9)?,
            started_at: row.try_get(10)?,
            ended_at: row.try_get(11)?,
            duration_seconds: row.try_get(12)?,
            ended_reason: row.try_get(13)?,
            cost: row.try_get(14)?,
            cost_breakdown: row.try_get(15)?,
            summary: row.try_get(16)?,
            success_evaluation: row.try_get(17)?,
            structured_data: row.try_get(18)?,
            call_type: row.try_get(19)?,
            sentiment: row.try_get(20)?,
            caller_name: row.try_get(21)?,
            action_items: row.try_get(22)?,
            recording_url: row.try_get(23)?,
            stereo_recording_url: row.try_get(24)?,
            has_recording: row.try_get(25)?,
            hung_up: row.try_get(26)?,
            processed: row.try_get(27)?,
            segment_count: row.try_get(28)?,
            action_count: row.try_get(29)?,
            action_types: row.try_get(30)?,
            last_position: row.try_get(31)?,
        })
    }

    fn into_cells(self) -> Vec<Cell> {
        vec![
            self.id.into(),
            self.organization_id.into(),
            self.vapi_call_id.into(),
            self.provider_call_id.into(),
            self.direction.into(),
            self.status.into(),
            self.from_number.into(),
            self.to_number.into(),
            self.phone_number_id.into(),
            self.assistant_id.into(),
            self.started_at.into(),
            self.ended_at.into(),
            self.duration_seconds.into(),
            self.ended_reason.into(),
            self.cost.into(),
            self.cost_breakdown.into(),
            self.summary.into(),
            self.success_evaluation.into(),
            self.structured_data.into(),
            self.call_type.into(),
            self.sentiment.into(),
            self.caller_name.into(),
            self.action_items.into(),
            self.recording_url.into(),
            self.stereo_recording_url.into(),
            self.has_recording.into(),
            self.hung_up.into(),
            self.processed.into(),
            self.segment_count.into(),
            self.action_count.into(),
            self.action_types.into(),
            self.last_position.into(),
        ]
    }

    /// Applies one event other than `CallStarted` (which creates the row); returns the
    /// action row a function call adds.
    fn apply(
        &mut self,
        event: &CallEvent,
        position: i64,
    ) -> Result<Option<Vec<Cell>>, ProjectionError> {
        let mut action = None;
        match event {
            CallEvent::CallStarted { .. } => return Ok(None),
            CallEvent::CallDetailsLearned {
                from_number,
                to_number,
                provider_call_id,
                phone_number_id,
                assistant_id,
            } => {
                let learn = |slot: &mut Option<String>, value: &Option<String>| {
                    if value.is_some() {
                        slot.clone_from(value);
                    }
                };
                learn(&mut self.from_number, from_number);
                learn(&mut self.to_number, to_number);
                learn(&mut self.provider_call_id, provider_call_id);
                learn(&mut self.phone_number_id, phone_number_id);
                learn(&mut self.assistant_id, assistant_id);
            }
            CallEvent::CallStatusChanged {
                status,
                ended_reason,
                ..
            } => {
                self.status = status_name(status).to_string();
                if ended_reason.is_some() {
                    self.ended_reason.clone_from(ended_reason);
                }
            }
            CallEvent::TranscriptSegmentAdded { .. } => self.segment_count += 1,
            CallEvent::FunctionCallHandled { invocation } => {
                let kind = action_type(&invocation.action);
                action = Some(vec![
                    self.id.clone().into(),
                    invocation.tool_call_id.clone().into(),
                    self.organization_id.clone().into(),
                    invocation.name.clone().into(),
                    kind.into(),
                    serde_json::to_string(&invocation.action)?.into(),
                    invocation.arguments.to_string().into(),
                    invocation.reply.clone().into(),
                    action_status(&invocation.action).into(),
                    ms(&invocation.at).into(),
                ]);
                self.action_count += 1;
                self.action_types.push_str(&format!(",{kind},"));
            }
            CallEvent::CallHungUp { .. } => self.hung_up = 1,
            CallEvent::CallEnded { report } => {
                self.status = "ended".into();
                self.ended_at = Some(opt_ms(&report.ended_at).unwrap_or_else(|| ms(&report.at)));
                self.duration_seconds = report.duration_seconds;
                if report.ended_reason.is_some() {
                    self.ended_reason.clone_from(&report.ended_reason);
                }
                self.cost = report.cost;
                self.cost_breakdown = json_text(&report.cost_breakdown);
                if self.summary.is_none() {
                    self.summary.clone_from(&report.summary);
                }
                self.success_evaluation
                    .clone_from(&report.success_evaluation);
                self.structured_data = json_text(&report.structured_data);
                if let Some(started) = opt_ms(&report.started_at) {
                    self.started_at = started;
                }
            }
            CallEvent::RecordingAvailable {
                url, stereo_url, ..
            } => {
                self.recording_url = Some(url.clone());
                self.stereo_recording_url.clone_from(stereo_url);
                self.has_recording = 1;
            }
            CallEvent::CallAnalyzed { analysis } => {
                self.summary = Some(analysis.summary.clone());
                self.call_type.clone_from(&analysis.call_type);
                self.sentiment.clone_from(&analysis.sentiment);
                self.caller_name.clone_from(&analysis.caller_name);
                self.action_items = Some(serde_json::to_string(&analysis.action_items)?);
            }
            CallEvent::CallProcessed { .. } => self.processed = 1,
            CallEvent::NotificationsRequested { .. } => {}
        }
        self.last_position = position;
        Ok(action)
    }
}

fn started_row(stored: &StoredEvent, event: &CallEvent) -> Option<CallRow> {
    let CallEvent::CallStarted {
        organization_id,
        vapi_call_id,
        from_number,
        to_number,
        direction,
        phone_number_id,
        assistant_id,
        provider_call_id,
        started_at,
    } = event
    else {
        return None;
    };
    Some(CallRow {
        id: stored.aggregate_id.clone(),
        organization_id: organization_id.to_string(),
        vapi_call_id: vapi_call_id.clone(),
        provider_call_id: provider_call_id.clone(),
        direction: direction_name(direction).into(),
        status: "in-progress".into(),
        from_number: from_number.clone(),
        to_number: to_number.clone(),
        phone_number_id: phone_number_id.clone(),
        assistant_id: assistant_id.clone(),
        started_at: opt_ms(started_at).unwrap_or(stored.recorded_at),
        last_position: stored.position,
        ..CallRow::default()
    })
}

/// Folds `events` into the calls tables with one read and two writes.
pub async fn apply_batch(
    tx: &mut Transaction<'static, Any>,
    tables: Tables,
    events: &[(StoredEvent, DomainEvent)],
) -> Result<(), ProjectionError> {
    let calls = tables.name("calls");
    // Load every touched call's row (a start in this batch finds none, as on a fresh build).
    let mut touched_ids: Vec<String> = events
        .iter()
        .filter(|(_, event)| matches!(event, DomainEvent::Call(_)))
        .map(|(stored, _)| stored.aggregate_id.clone())
        .collect();
    touched_ids.sort_unstable();
    touched_ids.dedup();
    let mut rows: HashMap<String, CallRow> = HashMap::new();
    let select = format!("SELECT {} FROM {calls} WHERE id IN ", COLUMNS.join(", "));
    for row in fetch_in(tx, &select, &touched_ids).await? {
        let row = CallRow::from_row(&row)?;
        rows.insert(row.id.clone(), row);
    }

    let mut actions: Vec<Vec<Cell>> = Vec::new();
    let mut seen_actions = std::collections::HashSet::new();
    let mut touched: Vec<String> = Vec::new();
    for (stored, event) in events {
        let DomainEvent::Call(event) = event else {
            continue;
        };
        let id = &stored.aggregate_id;
        if let Some(row) = rows.get_mut(id) {
            if let Some(action) = row.apply(event, stored.position)? {
                // First write wins, as `ON CONFLICT DO NOTHING` would within one batch.
                if seen_actions.insert((id.clone(), action_key(&action))) {
                    actions.push(action);
                }
            }
            touched.push(id.clone());
        } else if let Some(row) = started_row(stored, event) {
            rows.insert(id.clone(), row);
            touched.push(id.clone());
        }
        // Any other event of a call without a row changes nothing, as the UPDATEs would.
    }
    touched.sort_unstable();
    touched.dedup();
    let written: Vec<Vec<Cell>> = touched
        .iter()
        .filter_map(|id| rows.remove(id))
        .map(CallRow::into_cells)
        .collect();
    insert_rows(
        tx,
        &calls,
        &COLUMNS,
        written,
        &replace_all(&COLUMNS, &["id"]),
    )
    .await?;
    let call_actions = tables.name("call_actions");
    insert_rows(
        tx,
        &call_actions,
        &ACTION_COLUMNS,
        actions,
        "ON CONFLICT (call_id, tool_call_id) DO NOTHING",
    )
    .await?;
    Ok(())
}

fn action_key(action: &[Cell]) -> String {
    match action.get(1) {
        Some(Cell::Text(Some(key))) => key.clone(),
        _ => String::new(),
    }
}
