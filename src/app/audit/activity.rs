//! The organization's activity across all its streams (`GET /api/v1/audit`): who did what,
//! filtered by actor, stream kind, event type and time range, keyset-paged by log position.

use eventlog::ActivityFilter;

use super::{audited, AuditEvent, View};
use crate::app::{organizations, AppError, Caller};
use crate::state::AppState;

/// Up to `limit` of the caller's organization's events after log position `after` that
/// `filter` keeps.
pub async fn activity(
    state: &AppState,
    caller: &Caller,
    view: View,
    filter: &ActivityFilter,
    after: i64,
    limit: i64,
) -> Result<Vec<AuditEvent>, AppError> {
    let organization = organizations::load(state, caller).await?;
    let org = caller.organization_id.to_string();
    let events = state
        .store
        .read_activity(&org, filter, after, limit)
        .await?;
    Ok(events
        .iter()
        .map(|e| audited(e, &organization, view))
        .collect())
}
