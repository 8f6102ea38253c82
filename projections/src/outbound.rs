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

use std::collections::HashMap;

use crate::batch::{insert_rows, Cell};
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
        if let Some((attempt, seen, error)) = attempt_of(event) {
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
        let Some(change) = change_of(event) else {
            return Ok(());
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

    /// Deliveries started in the batch are folded in memory and written with one multi-row
    /// INSERT (and their attempts with another); events of older deliveries are applied one
    /// by one. A backlog of deliveries then costs two statements per batch, not three per
    /// delivery.
    async fn apply_batch(
        &self,
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        events: &[(StoredEvent, DomainEvent)],
    ) -> Result<(), ProjectionError> {
        let mut fresh: Vec<Fresh> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut attempts: Vec<Vec<Cell>> = Vec::new();
        for (stored, event) in events {
            let (DomainEvent::Process(process), Some(id)) = (event, subject(stored)) else {
                continue;
            };
            let at = ms(&process.at());
            let position = stored.position;
            if let ProcessEvent::ProcessStarted {
                organization_id,
                input,
                ..
            } = process
            {
                if !index.contains_key(id) {
                    index.insert(id.to_string(), fresh.len());
                    fresh.push(Fresh {
                        id: id.to_string(),
                        organization_id: organization_id.map(|o| o.to_string()).unwrap_or_default(),
                        endpoint_id: text(input, "/endpoint_id").unwrap_or_default(),
                        event_id: text(input, "/event/id").unwrap_or_default(),
                        event_type: text(input, "/event/type").unwrap_or_default(),
                        event_position: input
                            .pointer("/event/position")
                            .and_then(Value::as_i64)
                            .unwrap_or(0),
                        replay_id: text(input, "/replay_id"),
                        status: "pending",
                        attempts: 0,
                        last_status_code: None,
                        last_error: None,
                        next_attempt_at: None,
                        created_at: at,
                        updated_at: at,
                        last_position: position,
                    });
                }
                continue;
            }
            let Some(&n) = index.get(id) else {
                self.apply(tx, tables, stored, event).await?;
                continue;
            };
            let row = &mut fresh[n];
            if let Some((attempt, seen, error)) = attempt_of(process) {
                attempts.push(vec![
                    id.into(),
                    position.into(),
                    row.organization_id.clone().into(),
                    i64::from(attempt).into(),
                    at.into(),
                    number(seen, "status_code").into(),
                    number(seen, "latency_ms").into(),
                    error.into(),
                    text(seen, "/response").into(),
                ]);
            }
            if let Some(change) = change_of(process) {
                row.change(change, at, position);
            }
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let rows = fresh.into_iter().map(Fresh::cells).collect();
        insert_rows(
            tx,
            &tables.name("outbound_deliveries"),
            &DELIVERY_COLUMNS,
            rows,
            "ON CONFLICT (id) DO NOTHING",
        )
        .await?;
        insert_rows(
            tx,
            &tables.name("outbound_attempts"),
            &ATTEMPT_COLUMNS,
            attempts,
            "ON CONFLICT (delivery_id, position) DO NOTHING",
        )
        .await
    }
}

/// An attempt's row, from what the step saw: (attempt, what it saw, its error).
fn attempt_of(event: &ProcessEvent) -> Option<(u32, &Value, Option<String>)> {
    match event {
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
    }
}

/// A delivery started in the batch being applied, folded in memory (the usual case: a
/// delivery's start, its attempt and its completion are one append).
struct Fresh {
    id: String,
    organization_id: String,
    endpoint_id: String,
    event_id: String,
    event_type: String,
    event_position: i64,
    replay_id: Option<String>,
    status: &'static str,
    attempts: i64,
    last_status_code: Option<i64>,
    last_error: Option<String>,
    next_attempt_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
    last_position: i64,
}

const DELIVERY_COLUMNS: [&str; 15] = [
    "id",
    "organization_id",
    "endpoint_id",
    "event_id",
    "event_type",
    "event_position",
    "replay_id",
    "status",
    "attempts",
    "last_status_code",
    "last_error",
    "next_attempt_at",
    "created_at",
    "updated_at",
    "last_position",
];

const ATTEMPT_COLUMNS: [&str; 9] = [
    "delivery_id",
    "position",
    "organization_id",
    "attempt",
    "at",
    "status_code",
    "latency_ms",
    "error",
    "response",
];

impl Fresh {
    fn change(&mut self, change: Change, at: i64, position: i64) {
        let (status, attempts, code, error, next) = change;
        self.status = status;
        self.attempts = attempts.map(i64::from).unwrap_or(self.attempts);
        self.last_status_code = code.or(self.last_status_code);
        self.last_error = error.or(self.last_error.take());
        self.next_attempt_at = next;
        self.updated_at = at;
        self.last_position = position;
    }

    fn cells(self) -> Vec<Cell> {
        vec![
            self.id.into(),
            self.organization_id.into(),
            self.endpoint_id.into(),
            self.event_id.into(),
            self.event_type.into(),
            self.event_position.into(),
            self.replay_id.into(),
            self.status.into(),
            self.attempts.into(),
            self.last_status_code.into(),
            self.last_error.into(),
            self.next_attempt_at.into(),
            self.created_at.into(),
            self.updated_at.into(),
            self.last_position.into(),
        ]
    }
}

/// (status, attempts, status code, last error, next attempt); `None` keeps a column (but
/// the next attempt is always set).
type Change = (
    &'static str,
    Option<u32>,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

/// How an event changes its delivery's row, if it does.
fn change_of(event: &ProcessEvent) -> Option<Change> {
    Some(match event {
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
        | ProcessEvent::ProcessCompleted { .. } => return None,
    })
}
