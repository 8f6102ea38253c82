//! The `usage_daily` read model: calls, seconds, billable minutes and cost per organization
//! per UTC day, from ended calls. Each call bills whole minutes, rounded up, as in the seed.

use aggregates::call::{CallEvent, MAX_CALL_SECONDS};
use async_trait::async_trait;
use eventlog::StoredEvent;
use std::collections::HashMap;

use sqlx::{Any, Row, Transaction};

use crate::batch::{fetch_in_pairs, insert_rows, replace_all, Cell};
use crate::projector::{DomainEvent, ProjectionError, Projector, Tables};

pub struct UsageProjector;

/// Whole billable minutes for a call of `seconds` (rounded up; a 0 s call bills nothing).
pub fn billable_minutes(seconds: f64) -> i64 {
    if seconds.is_finite() && seconds > 0.0 {
        (seconds / 60.0).ceil() as i64
    } else {
        0
    }
}

/// The largest cost of one call metered, in USD (the same bound the VAPI parser applies).
const MAX_METERED_COST: f64 = 100_000.0;

/// One ended call's contribution to its organization's day.
struct Metered {
    organization_id: String,
    day: String,
    seconds: f64,
    minutes: i64,
    cost: f64,
}

fn metered(stored: &StoredEvent, event: &DomainEvent) -> Option<Metered> {
    let DomainEvent::Call(CallEvent::CallEnded { report }) = event else {
        return None;
    };
    let Some(organization_id) = stored.metadata.tenant_id.clone() else {
        tracing::warn!(
            position = stored.position,
            "ended call without tenant; not metered"
        );
        return None;
    };
    // Events logged before the Call aggregate refused absurd durations may still carry one
    // (1e308 would overflow the day's totals and stall this projector): metered as unknown.
    let seconds = report
        .duration_seconds
        .filter(|s| (0.0..=MAX_CALL_SECONDS).contains(s))
        .unwrap_or(0.0);
    Some(Metered {
        organization_id,
        day: report
            .ended_at
            .unwrap_or(report.at)
            .format("%Y-%m-%d")
            .to_string(),
        seconds,
        minutes: billable_minutes(seconds),
        cost: report
            .cost
            .filter(|c| c.is_finite() && (0.0..=MAX_METERED_COST).contains(c))
            .unwrap_or(0.0),
    })
}

const COLUMNS: [&str; 6] = [
    "organization_id",
    "day",
    "calls",
    "seconds",
    "minutes",
    "cost",
];

#[async_trait]
impl Projector for UsageProjector {
    fn name(&self) -> &'static str {
        "usage"
    }

    fn wants(&self, event: &DomainEvent) -> bool {
        matches!(event, DomainEvent::Call(CallEvent::CallEnded { .. }))
    }

    fn tables(&self) -> &'static [&'static str] {
        &["usage_daily"]
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        stored: &StoredEvent,
        event: &DomainEvent,
    ) -> Result<(), ProjectionError> {
        let Some(m) = metered(stored, event) else {
            return Ok(());
        };
        let usage = tables.name("usage_daily");
        sqlx::query(&format!(
            "INSERT INTO {usage} (organization_id, day, calls, seconds, minutes, cost) \
             VALUES ($1, $2, 1, $3, $4, $5) ON CONFLICT (organization_id, day) DO UPDATE SET \
             calls = {usage}.calls + 1, seconds = {usage}.seconds + excluded.seconds, \
             minutes = {usage}.minutes + excluded.minutes, cost = {usage}.cost + excluded.cost"
        ))
        .bind(m.organization_id)
        .bind(m.day)
        .bind(m.seconds)
        .bind(m.minutes)
        .bind(m.cost)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Sums a batch per organization and day, starting from the stored totals and adding in
    /// log order (so floating-point totals equal the per-event ones exactly).
    async fn apply_batch(
        &self,
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        events: &[(StoredEvent, DomainEvent)],
    ) -> Result<(), ProjectionError> {
        let metered: Vec<Metered> = events.iter().filter_map(|(s, e)| metered(s, e)).collect();
        let mut keys: Vec<(String, String)> = metered
            .iter()
            .map(|m| (m.organization_id.clone(), m.day.clone()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let usage = tables.name("usage_daily");
        let select = format!(
            "SELECT {} FROM {usage} WHERE (organization_id, day) IN ",
            COLUMNS.join(", ")
        );
        let mut totals: HashMap<(String, String), (i64, f64, i64, f64)> = HashMap::new();
        for row in fetch_in_pairs(tx, &select, &keys).await? {
            totals.insert(
                (row.try_get(0)?, row.try_get(1)?),
                (
                    row.try_get(2)?,
                    row.try_get(3)?,
                    row.try_get(4)?,
                    row.try_get(5)?,
                ),
            );
        }
        for m in metered {
            let total = totals.entry((m.organization_id, m.day)).or_default();
            total.0 += 1;
            total.1 += m.seconds;
            total.2 += m.minutes;
            total.3 += m.cost;
        }
        let rows: Vec<Vec<Cell>> = keys
            .into_iter()
            .filter_map(|key| {
                let (calls, seconds, minutes, cost) = totals.remove(&key)?;
                Some(vec![
                    key.0.into(),
                    key.1.into(),
                    calls.into(),
                    seconds.into(),
                    minutes.into(),
                    cost.into(),
                ])
            })
            .collect();
        let upsert = replace_all(&COLUMNS, &["organization_id", "day"]);
        insert_rows(tx, &usage, &COLUMNS, rows, &upsert).await
    }
}
