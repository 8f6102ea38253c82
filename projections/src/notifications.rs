//! The `notifications` read model: one row per notification (an SMS or an email to one
//! recipient), projected from the events of the `notification` processes: queued when the
//! process starts, then sending, sent (with the provider's message id), retrying, deferred
//! (quiet hours), failed or skipped, with the attempts made and the last error (or reason).

use aggregates::process::ProcessEvent;
use async_trait::async_trait;
use eventlog::StoredEvent;
use serde_json::Value;
use sqlx::{Any, Transaction};

use crate::projector::{DomainEvent, ProjectionError, Projector, Tables};
use crate::sql::ms;

/// The process kind whose instances are notifications (its stream ids start `notification:`).
pub const NOTIFICATION_KIND: &str = "notification";

pub struct NotificationsProjector;

fn subject(stored: &StoredEvent) -> Option<&str> {
    stored
        .aggregate_id
        .strip_prefix(NOTIFICATION_KIND)
        .and_then(|rest| rest.strip_prefix(':'))
}

fn text(input: &Value, key: &str) -> Option<String> {
    input.get(key).and_then(Value::as_str).map(str::to_string)
}

#[async_trait]
impl Projector for NotificationsProjector {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["notifications"]
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
        let table = tables.name("notifications");
        let pos = stored.position;
        let at = ms(&event.at());
        if let ProcessEvent::ProcessStarted {
            organization_id,
            input,
            ..
        } = event
        {
            sqlx::query(&format!(
                "INSERT INTO {table} (id, organization_id, call_id, reason, channel, recipient, \
                 subject, status, attempts, created_at, updated_at, last_position) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 0, $8, $8, $9) \
                 ON CONFLICT (id) DO NOTHING"
            ))
            .bind(id.to_string())
            .bind(organization_id.map(|o| o.to_string()).unwrap_or_default())
            .bind(text(input, "call_id"))
            .bind(text(input, "reason").unwrap_or_default())
            .bind(text(input, "channel").unwrap_or_default())
            .bind(text(input, "recipient").unwrap_or_default())
            .bind(text(input, "subject"))
            .bind(at)
            .bind(pos)
            .execute(&mut **tx)
            .await?;
            return Ok(());
        }
        // (status, attempts, provider message id, last error); `None` leaves a column as is.
        let (status, attempts, message_id, error): (&str, Option<u32>, Option<String>, _) =
            match event {
                ProcessEvent::StepAttempted { attempt, .. } => {
                    ("sending", Some(*attempt), None, None)
                }
                ProcessEvent::StepSucceeded {
                    attempt, output, ..
                } => (
                    "sent",
                    Some(*attempt),
                    text(output, "provider_message_id"),
                    None,
                ),
                ProcessEvent::StepFailed {
                    attempt,
                    error,
                    retry_at,
                    ..
                } => (
                    if retry_at.is_some() {
                        "retrying"
                    } else {
                        "failed"
                    },
                    Some(*attempt),
                    None,
                    Some(error.clone()),
                ),
                ProcessEvent::StepGaveUp { error, .. } => {
                    ("failed", None, None, Some(error.clone()))
                }
                ProcessEvent::StepSkipped { reason, .. } => {
                    ("skipped", None, None, Some(reason.clone()))
                }
                ProcessEvent::StepPostponed { reason, .. } => {
                    ("deferred", None, None, Some(reason.clone()))
                }
                ProcessEvent::StepReopened { .. } => ("queued", Some(0), None, None),
                ProcessEvent::ProcessStarted { .. } | ProcessEvent::ProcessCompleted { .. } => {
                    return Ok(())
                }
            };
        sqlx::query(&format!(
            "UPDATE {table} SET status = $1, attempts = COALESCE($2, attempts), \
             provider_message_id = COALESCE($3, provider_message_id), \
             last_error = COALESCE($4, last_error), updated_at = $5, last_position = $6 \
             WHERE id = $7"
        ))
        .bind(status)
        .bind(attempts.map(i64::from))
        .bind(message_id)
        .bind(error)
        .bind(at)
        .bind(pos)
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
