//! The `usage_daily` read model: calls, seconds, billable minutes and cost per organization
//! per UTC day, from ended calls. Each call bills whole minutes, rounded up, as in the seed.

use aggregates::call::CallEvent;
use async_trait::async_trait;
use eventlog::StoredEvent;
use sqlx::{Any, Transaction};

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

#[async_trait]
impl Projector for UsageProjector {
    fn name(&self) -> &'static str {
        "usage"
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
        let DomainEvent::Call(CallEvent::CallEnded { report }) = event else {
            return Ok(());
        };
        let Some(organization_id) = stored.metadata.tenant_id.clone() else {
            tracing::warn!(
                position = stored.position,
                "ended call without tenant; not metered"
            );
            return Ok(());
        };
        let seconds = report.duration_seconds.unwrap_or(0.0).max(0.0);
        let day = report
            .ended_at
            .unwrap_or(report.at)
            .format("%Y-%m-%d")
            .to_string();
        let usage = tables.name("usage_daily");
        sqlx::query(&format!(
            "INSERT INTO {usage} (organization_id, day, calls, seconds, minutes, cost) \
             VALUES ($1, $2, 1, $3, $4, $5) ON CONFLICT (organization_id, day) DO UPDATE SET \
             calls = {usage}.calls + 1, seconds = {usage}.seconds + excluded.seconds, \
             minutes = {usage}.minutes + excluded.minutes, cost = {usage}.cost + excluded.cost"
        ))
        .bind(organization_id)
        .bind(day)
        .bind(seconds)
        .bind(billable_minutes(seconds))
        .bind(report.cost.unwrap_or(0.0))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
