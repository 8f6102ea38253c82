//! Organization use cases: every command on an organization goes through [`execute_as`].

use aggregates::organization::{Organization, OrganizationCommand};
use eventlog::Executed;

use super::{command_meta, AppError, Caller};
use crate::state::AppState;

/// Runs `command` on the caller's organization as the caller. `scope` and `client_key` form
/// the idempotency key ([`command_meta`]); the aggregate decides whether the caller may.
pub async fn execute_as(
    state: &AppState,
    caller: &Caller,
    scope: &str,
    client_key: Option<&str>,
    command: OrganizationCommand,
) -> Result<Executed<Organization>, AppError> {
    let meta = command_meta(caller, scope, client_key);
    Ok(state
        .organizations
        .execute(&caller.organization_id.to_string(), command, &meta)
        .await?)
}

/// How stale a cached organization a process step reads may be (another process's writes;
/// this process's own are always in the cache).
const STEP_STALENESS: std::time::Duration = std::time::Duration::from_secs(2);

/// The organization as a process step reads it: the cached state when it is at most
/// [`STEP_STALENESS`] old (a stream read less per step), else read fresh; 404 when it does not
/// exist.
pub async fn load_recent(state: &AppState, caller: &Caller) -> Result<Organization, AppError> {
    let (organization, version) = state
        .organizations
        .load_within(&caller.organization_id.to_string(), STEP_STALENESS)
        .await?;
    if version == 0 {
        return load(state, caller).await;
    }
    Ok(organization)
}

/// The organization's current state (404 when it does not exist).
pub async fn load(state: &AppState, caller: &Caller) -> Result<Organization, AppError> {
    let (organization, version) = state
        .organizations
        .load(&caller.organization_id.to_string())
        .await?;
    if version == 0 {
        return Err(AppError::not_found(
            "organization_not_found",
            "the organization does not exist",
        ));
    }
    Ok(organization)
}
