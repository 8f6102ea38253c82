//! The `notifications` read model: one row per notification (an SMS or an email to one
//! recipient), projected from the events of the `notification` processes: queued when the
//! process starts, then sending, sent (with the provider's message id), retrying, deferred
//! (quiet hours), failed or skipped, with the attempts made and the last error (or reason).

use aggregates::process::ProcessEvent;
use async_trait::async_trait;
use eventlog::StoredEvent;
use serde_json::Value;
use sqlx::{Any, Transaction};

use std::collections::BTreeMap;

use crate::batch::{fetch_in, insert_rows, replace_all, Cell};
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

/// What one process event does to its notification's row.
enum Change {
    /// The process started: the row, unless it exists already.
    Start(Row),
    /// A step's outcome; `None` leaves a column as it is. A row not there is left alone.
    Update {
        status: &'static str,
        attempts: Option<i64>,
        message_id: Option<String>,
        error: Option<String>,
        at: i64,
        position: i64,
    },
}

/// A `notifications` row, in [`COLUMNS`] order.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    organization_id: String,
    call_id: Option<String>,
    reason: String,
    channel: String,
    recipient: String,
    subject: Option<String>,
    status: String,
    provider_message_id: Option<String>,
    attempts: i64,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
    last_position: i64,
}

const COLUMNS: [&str; 14] = [
    "id",
    "organization_id",
    "call_id",
    "reason",
    "channel",
    "recipient",
    "subject",
    "status",
    "provider_message_id",
    "attempts",
    "last_error",
    "created_at",
    "updated_at",
    "last_position",
];

impl Row {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        Ok(Row {
            id: row.try_get(0)?,
            organization_id: row.try_get(1)?,
            call_id: row.try_get(2)?,
            reason: row.try_get(3)?,
            channel: row.try_get(4)?,
            recipient: row.try_get(5)?,
            subject: row.try_get(6)?,
            status: row.try_get(7)?,
            provider_message_id: row.try_get(8)?,
            attempts: row.try_get(9)?,
            last_error: row.try_get(10)?,
            created_at: row.try_get(11)?,
            updated_at: row.try_get(12)?,
            last_position: row.try_get(13)?,
        })
    }

    fn cells(self) -> Vec<Cell> {
        vec![
            self.id.into(),
            self.organization_id.into(),
            self.call_id.into(),
            self.reason.into(),
            self.channel.into(),
            self.recipient.into(),
            self.subject.into(),
            self.status.into(),
            self.provider_message_id.into(),
            self.attempts.into(),
            self.last_error.into(),
            self.created_at.into(),
            self.updated_at.into(),
            self.last_position.into(),
        ]
    }

    fn update(&mut self, change: Change) {
        if let Change::Update {
            status,
            attempts,
            message_id,
            error,
            at,
            position,
        } = change
        {
            self.status = status.to_string();
            self.attempts = attempts.unwrap_or(self.attempts);
            self.provider_message_id = message_id.or(self.provider_message_id.take());
            self.last_error = error.or(self.last_error.take());
            self.updated_at = at;
            self.last_position = position;
        }
    }
}

/// The notification `event` is about, and what it does to its row.
fn change(stored: &StoredEvent, event: &DomainEvent) -> Option<(String, Change)> {
    let (DomainEvent::Process(event), Some(id)) = (event, subject(stored)) else {
        return None;
    };
    let at = ms(&event.at());
    let position = stored.position;
    if let ProcessEvent::ProcessStarted {
        organization_id,
        input,
        ..
    } = event
    {
        let row = Row {
            id: id.to_string(),
            organization_id: organization_id.map(|o| o.to_string()).unwrap_or_default(),
            call_id: text(input, "call_id"),
            reason: text(input, "reason").unwrap_or_default(),
            channel: text(input, "channel").unwrap_or_default(),
            recipient: text(input, "recipient").unwrap_or_default(),
            subject: text(input, "subject"),
            status: "queued".to_string(),
            provider_message_id: None,
            attempts: 0,
            last_error: None,
            created_at: at,
            updated_at: at,
            last_position: position,
        };
        return Some((id.to_string(), Change::Start(row)));
    }
    let (status, attempts, message_id, error): (&'static str, Option<u32>, Option<String>, _) =
        match event {
            ProcessEvent::StepAttempted { attempt, .. } => ("sending", Some(*attempt), None, None),
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
            ProcessEvent::StepGaveUp { error, .. } => ("failed", None, None, Some(error.clone())),
            ProcessEvent::StepSkipped { reason, .. } => {
                ("skipped", None, None, Some(reason.clone()))
            }
            ProcessEvent::StepPostponed { reason, .. } => {
                ("deferred", None, None, Some(reason.clone()))
            }
            ProcessEvent::StepReopened { .. } => ("queued", Some(0), None, None),
            ProcessEvent::ProcessStarted { .. } | ProcessEvent::ProcessCompleted { .. } => {
                return None
            }
        };
    let change = Change::Update {
        status,
        attempts: attempts.map(i64::from),
        message_id,
        error,
        at,
        position,
    };
    Some((id.to_string(), change))
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
        let Some((id, change)) = change(stored, event) else {
            return Ok(());
        };
        let table = tables.name("notifications");
        match change {
            Change::Start(row) => {
                let tail = "ON CONFLICT (id) DO NOTHING";
                insert_rows(tx, &table, &COLUMNS, vec![row.cells()], tail).await
            }
            Change::Update {
                status,
                attempts,
                message_id,
                error,
                at,
                position,
            } => {
                sqlx::query(&format!(
                    "UPDATE {table} SET status = $1, attempts = COALESCE($2, attempts), \
                     provider_message_id = COALESCE($3, provider_message_id), \
                     last_error = COALESCE($4, last_error), updated_at = $5, \
                     last_position = $6 WHERE id = $7"
                ))
                .bind(status)
                .bind(attempts)
                .bind(message_id)
                .bind(error)
                .bind(at)
                .bind(position)
                .bind(id)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
        }
    }

    /// The batch folded in memory: the rows it touches read in one query, changed in log
    /// order, written back in one upsert (a call's notifications were two to four statements
    /// each, every batch).
    async fn apply_batch(
        &self,
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        events: &[(StoredEvent, DomainEvent)],
    ) -> Result<(), ProjectionError> {
        let changes: Vec<(String, Change)> =
            events.iter().filter_map(|(s, e)| change(s, e)).collect();
        if changes.is_empty() {
            return Ok(());
        }
        let table = tables.name("notifications");
        let mut ids: Vec<String> = changes.iter().map(|(id, _)| id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        let select = format!("SELECT {} FROM {table} WHERE id IN ", COLUMNS.join(", "));
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        for row in fetch_in(tx, &select, &ids).await? {
            let row = Row::from_row(&row)?;
            rows.insert(row.id.clone(), row);
        }
        for (id, change) in changes {
            match change {
                Change::Start(row) => {
                    rows.entry(id).or_insert(row);
                }
                update => {
                    if let Some(row) = rows.get_mut(&id) {
                        row.update(update);
                    }
                }
            }
        }
        let cells: Vec<Vec<Cell>> = rows.into_values().map(Row::cells).collect();
        let upsert = replace_all(&COLUMNS, &["id"]);
        insert_rows(tx, &table, &COLUMNS, cells, &upsert).await
    }
}
