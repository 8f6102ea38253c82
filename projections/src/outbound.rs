//! The outbound webhook read models, projected from the `webhook` processes' events:
//! `outbound_deliveries` (one row per delivery of an event to an endpoint: pending,
//! retrying, delivered, dead_letter or skipped, with its attempts and next attempt) and
//! `outbound_attempts` (each attempt: when, the status code, latency, error and the first bytes
//! of the receiver's answer).

use aggregates::process::ProcessEvent;
use async_trait::async_trait;
use eventlog::StoredEvent;
use serde_json::Value;
use sqlx::{Any, Transaction};

use crate::projector::{DomainEvent, ProjectionError, Projector, Tables};
use crate::sql::ms;

/// The process kind whose instances are deliveries (stream ids `webhook:{subject}`).
pub const WEBHOOK_KIND: &str = "webhook";

pub struct OutboundDeliveriesProjector;

fn subject(stored: &StoredEvent) -> Option<&str> {
    stored
        .aggregate_id
        .strip_prefix(WEBHOOK_KIND)
        .and_then(|rest| rest.strip_prefix(':'))
}

fn text(value: &Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn number(value: &Value, key: &str) -> Option<i64> {
    value.get(key).and_then(Value::as_i64)
}

#[async_trait]
impl Projector for OutboundDeliveriesProjector {
    fn name(&self) -> &'static str {
        "outbound_deliveries"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["outbound_deliveries", "outbound_attempts"]
    }

    fn wants(&self, event: &DomainEvent) -> bool {
        matches!(event, DomainEvent::Process(_))
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        stored: &StoredEvent,
        event: &DomainEvent,
    ) -> Result<(), ProjectionError> {
        let (DomainEvent::Process(event), Some(id)) = (event, subject(stored)) else {
            return Ok(());
        };
        let deliveries = tables.name("outbound_deliveries");
        let attempts = tables.name("outbound_attempts");
        let pos = stored.position;
        let at = ms(&event.at());
        if let ProcessEvent::ProcessStarted {
            organization_id,
            input,
            ..
        } = event
        {
            sqlx::query(&format!(
                "INSERT INTO {deliveries} (id, organization_id, endpoint_id, event_id, \
                 event_type, event_position, replay_id, status, attempts, created_at, \
                 updated_at, last_position) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8, $9) \
                 ON CONFLICT (id) DO NOTHING"
            ))
            .bind(id.to_string())
            .bind(organization_id.map(|o| o.to_string()).unwrap_or_default())
            .bind(text(input, "/endpoint_id").unwrap_or_default())
            .bind(text(input, "/event/id").unwrap_or_default())
            .bind(text(input, "/event/type").unwrap_or_default())
            .bind(
                input
                    .pointer("/event/position")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
            )
            .bind(text(input, "/replay_id"))
            .bind(at)
            .bind(pos)
            .execute(&mut **tx)
            .await?;
            return Ok(());
        }
        // An attempt's row, from what the step saw.
        let attempt_row = match event {
            ProcessEvent::StepSucceeded {
                attempt, output, ..
            } => Some((*attempt, output, None)),
            ProcessEvent::StepFailed {
                attempt,
                detail,
                error,
                ..
            } => Some((*attempt, detail, Some(error.clone()))),
            _ => None,
        };
        if let Some((attempt, seen, error)) = attempt_row {
            sqlx::query(&format!(
                "INSERT INTO {attempts} (delivery_id, position, organization_id, attempt, at, \
                 status_code, latency_ms, error, response) \
                 SELECT $1, $2, organization_id, $3, $4, $5, $6, $7, $8 FROM {deliveries} \
                 WHERE id = $1 ON CONFLICT (delivery_id, position) DO NOTHING"
            ))
            .bind(id.to_string())
            .bind(pos)
            .bind(i64::from(attempt))
            .bind(at)
            .bind(number(seen, "status_code"))
            .bind(number(seen, "latency_ms"))
            .bind(error)
            .bind(text(seen, "/response"))
            .execute(&mut **tx)
            .await?;
        }
        // (status, attempts, status code, last error, next attempt); `None` keeps a column.
        type Change = (
            &'static str,
            Option<u32>,
            Option<i64>,
            Option<String>,
            Option<i64>,
        );
        let change: Change = match event {
            ProcessEvent::StepSucceeded {
                attempt, output, ..
            } => (
                "delivered",
                Some(*attempt),
                number(output, "status_code"),
                None,
                None,
            ),
            ProcessEvent::StepFailed {
                attempt,
                error,
                retry_at,
                detail,
                ..
            } => (
                if retry_at.is_some() {
                    "retrying"
                } else {
                    "dead_letter"
                },
                Some(*attempt),
                number(detail, "status_code"),
                Some(error.clone()),
                retry_at.as_ref().map(ms),
            ),
            ProcessEvent::StepGaveUp { error, .. } => {
                ("dead_letter", None, None, Some(error.clone()), None)
            }
            ProcessEvent::StepSkipped { reason, .. } => {
                ("skipped", None, None, Some(reason.clone()), None)
            }
            ProcessEvent::StepPostponed { until, reason, .. } => (
                "retrying",
                None,
                None,
                Some(reason.clone()),
                Some(ms(until)),
            ),
            ProcessEvent::StepReopened { .. } => ("pending", Some(0), None, None, None),
            ProcessEvent::StepAttempted { .. }
            | ProcessEvent::ProcessStarted { .. }
            | ProcessEvent::ProcessCompleted { .. } => return Ok(()),
        };
        let (status, attempts_made, code, error, next) = change;
        sqlx::query(&format!(
            "UPDATE {deliveries} SET status = $1, attempts = COALESCE($2, attempts), \
             last_status_code = COALESCE($3, last_status_code), \
             last_error = COALESCE($4, last_error), next_attempt_at = $5, updated_at = $6, \
             last_position = $7 WHERE id = $8"
        ))
        .bind(status)
        .bind(attempts_made.map(i64::from))
        .bind(code)
        .bind(error)
        .bind(next)
        .bind(at)
        .bind(pos)
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
