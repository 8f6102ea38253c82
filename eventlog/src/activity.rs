//! A tenant's activity across all its streams, filtered (an auditor's query): by actor, by
//! stream kind, by event type, by record time; keyset-paged by log position.

use crate::store::{decode, EventStore};
use crate::{StoreError, StoredEvent};

/// What to keep. Every field narrows; `None` keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityFilter {
    /// An actor (`user:u1`) or an actor's prefix up to a `:` (`provider:vapi` keeps every
    /// VAPI delivery, `system` every process).
    pub actor: Option<String>,
    /// The stream kind (`call`, `organization`, `subscription`, …).
    pub aggregate_type: Option<String>,
    pub event_type: Option<String>,
    /// Record time, milliseconds since the epoch: `[from_ms, to_ms)`.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

impl EventStore {
    /// Up to `limit` of tenant `tenant`'s events after `after_position` that `filter` keeps,
    /// by position.
    pub async fn read_activity(
        &self,
        tenant: &str,
        filter: &ActivityFilter,
        after_position: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        // $1 tenant, $2 after, $3 limit, $4..$5 the time range (always bound, so the
        // optional text filters number from $6).
        let mut clauses = vec![
            "tenant_id = $1".to_string(),
            "global_position > $2".into(),
            "recorded_at >= $4".into(),
            "recorded_at < $5".into(),
        ];
        let mut binds: Vec<String> = Vec::new();
        let mut bind = |value: String| {
            binds.push(value);
            format!("${}", binds.len() + 5)
        };
        if let Some(actor) = &filter.actor {
            let exact = bind(actor.clone());
            let prefix = bind(format!("{actor}:"));
            clauses.push(format!(
                "(actor = {exact} OR substr(actor, 1, length({prefix})) = {prefix})"
            ));
        }
        if let Some(kind) = &filter.aggregate_type {
            clauses.push(format!("aggregate_type = {}", bind(kind.clone())));
        }
        if let Some(event_type) = &filter.event_type {
            clauses.push(format!("event_type = {}", bind(event_type.clone())));
        }
        let sql = format!(
            "SELECT {} FROM events WHERE {} ORDER BY global_position LIMIT $3",
            self.select_columns(),
            clauses.join(" AND ")
        );
        let mut query = sqlx::query(&sql)
            .bind(tenant.to_string())
            .bind(after_position)
            .bind(limit)
            .bind(filter.from_ms.unwrap_or(i64::MIN))
            .bind(filter.to_ms.unwrap_or(i64::MAX));
        for value in binds {
            query = query.bind(value);
        }
        let rows = query.fetch_all(self.pool()).await?;
        rows.iter().map(decode).collect()
    }
}
