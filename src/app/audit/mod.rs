//! The auditor's view of one stream: every event in order with its time, type, actor
//! (resolved to a member, an API key, a provider delivery or a system process), correlation
//! and causation ids, and its data with every secret masked. Tenant-isolated: a call's or a
//! subscription's events are shown only when they belong to the caller's organization.

use aggregates::organization::Organization;
use eventlog::StoredEvent;
use serde_json::{json, Value};

use super::{organizations, AppError, Caller};
use crate::state::AppState;

mod activity;
mod deliveries;
pub mod historical;
mod mask;

pub use activity::activity;
pub use deliveries::{deliveries, AuditedDelivery};
pub use mask::{mask, View};

/// The streams an auditor may read, by the route's `kind`.
pub const KINDS: [&str; 4] = ["call", "organization", "subscription", "user"];

/// One audited event.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub sequence: i64,
    pub position: i64,
    pub event_type: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: Value,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub data: Value,
}

/// Who `actor` is, in words an auditor can use.
pub fn resolve_actor(actor: &str, organization: &Organization) -> Value {
    let mut parts = actor.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("user"), Some(id), _) => json!({
            "kind": "user", "id": id,
            "email": organization.members.get(id).map(|m| m.email.clone()),
        }),
        (Some("api_key"), Some(id), _) => json!({
            "kind": "api_key", "id": id,
            "name": organization.api_keys.get(id).map(|k| k.name.clone()),
        }),
        (Some("provider"), Some(provider), delivery) => json!({
            "kind": "provider", "provider": provider, "delivery": delivery,
        }),
        (Some("system"), what, rest) => {
            let what: Vec<&str> = [what, rest].into_iter().flatten().collect();
            json!({ "kind": "system", "what": what.join(":") })
        }
        _ => json!({ "kind": "unknown", "actor": actor }),
    }
}

fn audited(stored: &StoredEvent, organization: &Organization, view: View) -> AuditEvent {
    AuditEvent {
        sequence: stored.sequence,
        position: stored.position,
        event_type: stored.event_type.clone(),
        at: chrono::DateTime::from_timestamp_millis(stored.recorded_at)
            .unwrap_or(stored.metadata.received_at),
        actor: resolve_actor(&stored.metadata.actor, organization),
        correlation_id: stored.metadata.correlation_id.to_string(),
        causation_id: stored.metadata.causation_id.map(|c| c.to_string()),
        data: view.show(&stored.payload),
    }
}

/// Up to `limit` events of the stream `kind`/`id` after `after` (a sequence in the stream;
/// for `user`, a log position: a user's history is every event they caused here, across
/// streams). 404 when the stream is not the caller's organization's (or does not exist):
/// nothing tells another tenant's streams from missing ones.
pub async fn stream(
    state: &AppState,
    caller: &Caller,
    view: View,
    kind: &str,
    id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<AuditEvent>, AppError> {
    if !KINDS.contains(&kind) {
        return Err(AppError::not_found(
            "unknown_kind",
            format!("no audit of `{kind}`; kinds: {}", KINDS.join(", ")),
        ));
    }
    let organization = organizations::load(state, caller).await?;
    let org = caller.organization_id.to_string();
    let not_found = || AppError::not_found("stream_not_found", format!("no such {kind}"));
    if kind == "user" {
        // Anyone who ever was a member (removed members' history stays auditable).
        if !organization.members.contains_key(id) && !was_member(state, &org, id).await? {
            return Err(not_found());
        }
        let filter = eventlog::ActivityFilter {
            actor: Some(format!("user:{id}")),
            ..Default::default()
        };
        return activity(state, caller, view, &filter, after, limit).await;
    }
    if kind == "organization" && id != org {
        return Err(not_found());
    }
    // A stream belongs to the organization when its first event says so.
    let first = state.store.read_stream_page(kind, id, 0, 1).await?;
    let Some(first) = first.first() else {
        return Err(not_found());
    };
    let owned = kind == "organization" || first.metadata.tenant_id.as_deref() == Some(&org);
    if !owned {
        return Err(not_found());
    }
    let page = state.store.read_stream_page(kind, id, after, limit).await?;
    Ok(page
        .iter()
        .filter(|e| kind == "organization" || e.metadata.tenant_id.as_deref() == Some(&org))
        .map(|e| audited(e, &organization, view))
        .collect())
}

/// True when the organization's log names `user_id` as a member at any time.
async fn was_member(state: &AppState, org: &str, user_id: &str) -> Result<bool, AppError> {
    let events = state.store.read_stream("organization", org, 0).await?;
    Ok(events.iter().any(|e| {
        ["MemberJoined", "MemberInvited", "MemberRemoved"].contains(&e.event_type.as_str())
            && e.payload
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(|v| v.get("user_id"))
                .and_then(|v| v.as_str())
                == Some(user_id)
    }))
}

/// The stream's state folded from its events up to `as_of` (record time) and/or
/// `as_of_position` (log position), secrets masked: what we knew then.
pub async fn state_as_of(
    state: &AppState,
    caller: &Caller,
    view: View,
    kind: &str,
    id: &str,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
    as_of_position: Option<i64>,
) -> Result<(Value, i64, i64), AppError> {
    // The same checks as the history (kind, tenant): read its first page for them.
    if kind == "user" {
        return Err(AppError::not_found(
            "unknown_kind",
            "a user has a history, not a state: kinds with a state are call, organization, \
             subscription",
        ));
    }
    stream(state, caller, view, kind, id, 0, 1).await?;
    let until = historical::Until {
        until_ms: as_of.map(|t| t.timestamp_millis()),
        position: as_of_position,
    };
    let kept = historical::events_until(state, kind, id, until).await?;
    let last = kept
        .last()
        .map_or((0, 0), |(e, _)| (e.sequence, e.position));
    let decoded = kept.into_iter().map(|(_, event)| event);
    use projections::DomainEvent as D;
    let folded = match kind {
        "call" => serde_json::to_value(aggregates::replay::<aggregates::call::Call>(
            decoded.filter_map(|e| match e {
                D::Call(c) => Some(c),
                _ => None,
            }),
        )),
        "organization" => serde_json::to_value(aggregates::replay::<Organization>(
            decoded.filter_map(|e| match e {
                D::Organization(o) => Some(o),
                _ => None,
            }),
        )),
        _ => serde_json::to_value(
            aggregates::replay::<aggregates::subscription::Subscription>(decoded.filter_map(|e| {
                match e {
                    D::Subscription(s) => Some(s),
                    _ => None,
                }
            })),
        ),
    }
    .map_err(AppError::internal)?;
    Ok((view.show(&folded), last.0, last.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_are_resolved() {
        let org = Organization::default();
        assert_eq!(
            resolve_actor("provider:vapi:evt_1", &org)["delivery"],
            "evt_1"
        );
        assert_eq!(
            resolve_actor("system:process:onboarding", &org)["what"],
            "process:onboarding"
        );
        assert_eq!(resolve_actor("user:u1", &org)["kind"], "user");
        assert_eq!(resolve_actor("???", &org)["kind"], "unknown");
    }
}
