//! The `calls` and `call_actions` read models: one row per call, one per function call.

use aggregates::call::{CallAction, CallEvent};
use async_trait::async_trait;
use eventlog::StoredEvent;
use sqlx::{Any, Transaction};

use crate::projector::{DomainEvent, ProjectionError, Projector, Tables};
use crate::sql::{bind_f64, flag, json_text, ms, opt_ms};

mod fold;

pub struct CallsProjector;

/// The snake_case name of an action, as stored in `call_actions.action_type`.
pub fn action_type(action: &CallAction) -> &'static str {
    match action {
        CallAction::Transfer { .. } => "transfer",
        CallAction::DriverCallout { .. } => "driver_callout",
        CallAction::CallbackScheduled { .. } => "callback_scheduled",
        CallAction::MessageTaken { .. } => "message_taken",
        CallAction::Unknown { .. } => "unknown",
    }
}

fn action_status(action: &CallAction) -> &'static str {
    match action {
        CallAction::CallbackScheduled { .. } => "pending",
        CallAction::Transfer {
            completed: false, ..
        } => "failed",
        CallAction::Unknown { .. } => "failed",
        _ => "completed",
    }
}

#[async_trait]
impl Projector for CallsProjector {
    fn name(&self) -> &'static str {
        "calls"
    }

    fn wants(&self, event: &DomainEvent) -> bool {
        matches!(event, DomainEvent::Call(_))
    }

    fn tables(&self) -> &'static [&'static str] {
        &["calls", "call_actions"]
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
        let calls = tables.name("calls");
        let id = stored.aggregate_id.clone();
        let pos = stored.position;
        match event {
            CallEvent::CallStarted {
                organization_id,
                vapi_call_id,
                from_number,
                to_number,
                direction,
                phone_number_id,
                assistant_id,
                provider_call_id,
                started_at,
            } => {
                let direction = fold::direction_name(direction);
                sqlx::query(&format!(
                    "INSERT INTO {calls} (id, organization_id, vapi_call_id, provider_call_id, \
                     direction, status, from_number, to_number, phone_number_id, assistant_id, \
                     started_at, last_position) VALUES ($1, $2, $3, $4, $5, 'in-progress', $6, \
                     $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING"
                ))
                .bind(id)
                .bind(organization_id.to_string())
                .bind(vapi_call_id.clone())
                .bind(provider_call_id.clone())
                .bind(direction)
                .bind(from_number.clone())
                .bind(to_number.clone())
                .bind(phone_number_id.clone())
                .bind(assistant_id.clone())
                .bind(opt_ms(started_at).unwrap_or(stored.recorded_at))
                .bind(pos)
                .execute(&mut **tx)
                .await?;
            }
            CallEvent::CallDetailsLearned {
                from_number,
                to_number,
                provider_call_id,
                phone_number_id,
                assistant_id,
            } => {
                sqlx::query(&format!(
                    "UPDATE {calls} SET from_number = COALESCE($1, from_number), \
                     to_number = COALESCE($2, to_number), \
                     provider_call_id = COALESCE($3, provider_call_id), \
                     phone_number_id = COALESCE($4, phone_number_id), \
                     assistant_id = COALESCE($5, assistant_id), last_position = $6 WHERE id = $7"
                ))
                .bind(from_number.clone())
                .bind(to_number.clone())
                .bind(provider_call_id.clone())
                .bind(phone_number_id.clone())
                .bind(assistant_id.clone())
                .bind(pos)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
            CallEvent::CallStatusChanged {
                status,
                ended_reason,
                ..
            } => {
                let status = fold::status_name(status);
                sqlx::query(&format!(
                    "UPDATE {calls} SET status = $1, ended_reason = COALESCE($2, ended_reason), \
                     last_position = $3 WHERE id = $4"
                ))
                .bind(status)
                .bind(ended_reason.clone())
                .bind(pos)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
            CallEvent::TranscriptSegmentAdded { .. } => {
                sqlx::query(&format!(
                    "UPDATE {calls} SET segment_count = segment_count + 1, last_position = $1 \
                     WHERE id = $2"
                ))
                .bind(pos)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
            CallEvent::FunctionCallHandled { invocation } => {
                let kind = action_type(&invocation.action);
                let actions = tables.name("call_actions");
                sqlx::query(&format!(
                    "INSERT INTO {actions} (call_id, tool_call_id, organization_id, name, \
                     action_type, action_data, arguments, reply, status, at) \
                     SELECT $1, $2, organization_id, $3, $4, $5, $6, $7, $8, $9 FROM {calls} \
                     WHERE id = $1 ON CONFLICT (call_id, tool_call_id) DO NOTHING"
                ))
                .bind(id.clone())
                .bind(invocation.tool_call_id.clone())
                .bind(invocation.name.clone())
                .bind(kind)
                .bind(serde_json::to_string(&invocation.action)?)
                .bind(invocation.arguments.to_string())
                .bind(invocation.reply.clone())
                .bind(action_status(&invocation.action))
                .bind(ms(&invocation.at))
                .execute(&mut **tx)
                .await?;
                sqlx::query(&format!(
                    "UPDATE {calls} SET action_count = action_count + 1, \
                     action_types = action_types || $1, last_position = $2 WHERE id = $3"
                ))
                .bind(format!(",{kind},"))
                .bind(pos)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
            CallEvent::CallHungUp { .. } => {
                sqlx::query(&format!(
                    "UPDATE {calls} SET hung_up = 1, last_position = $1 WHERE id = $2"
                ))
                .bind(pos)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
            CallEvent::CallEnded { report } => {
                let sql = format!(
                    "UPDATE {calls} SET status = 'ended', \
                     ended_at = $1, duration_seconds = $2, \
                     cost = $3, ended_reason = COALESCE($4, ended_reason), cost_breakdown = $5, \
                     summary = COALESCE(summary, $6), success_evaluation = $7, \
                     structured_data = $8, started_at = COALESCE($9, started_at), \
                     last_position = $10 WHERE id = $11"
                );
                let query = sqlx::query(&sql)
                    .bind(opt_ms(&report.ended_at).unwrap_or_else(|| ms(&report.at)));
                // Floats through bind_f64 (see there); placeholders follow bind order.
                bind_f64(bind_f64(query, report.duration_seconds), report.cost)
                    .bind(report.ended_reason.clone())
                    .bind(json_text(&report.cost_breakdown))
                    .bind(report.summary.clone())
                    .bind(report.success_evaluation.clone())
                    .bind(json_text(&report.structured_data))
                    .bind(opt_ms(&report.started_at))
                    .bind(pos)
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
            CallEvent::RecordingAvailable {
                url, stereo_url, ..
            } => {
                sqlx::query(&format!(
                    "UPDATE {calls} SET recording_url = $1, stereo_recording_url = $2, \
                     has_recording = 1, last_position = $3 WHERE id = $4"
                ))
                .bind(url.clone())
                .bind(stereo_url.clone())
                .bind(pos)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
            CallEvent::CallAnalyzed { analysis } => {
                sqlx::query(&format!(
                    "UPDATE {calls} SET summary = $1, call_type = $2, sentiment = $3, \
                     caller_name = $4, action_items = $5, last_position = $6 WHERE id = $7"
                ))
                .bind(analysis.summary.clone())
                .bind(analysis.call_type.clone())
                .bind(analysis.sentiment.clone())
                .bind(analysis.caller_name.clone())
                .bind(serde_json::to_string(&analysis.action_items)?)
                .bind(pos)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
            CallEvent::CallProcessed { .. } => {
                sqlx::query(&format!(
                    "UPDATE {calls} SET processed = {}, last_position = $1 WHERE id = $2",
                    flag(true)
                ))
                .bind(pos)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            }
            CallEvent::NotificationsRequested { .. } => {}
        }
        Ok(())
    }

    /// Folds the batch in memory: one read and two writes per batch (see [`fold`]).
    async fn apply_batch(
        &self,
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        events: &[(StoredEvent, DomainEvent)],
    ) -> Result<(), ProjectionError> {
        fold::apply_batch(tx, tables, events).await
    }
}
