//! Outbound webhook endpoints and their deliveries: create (the signing secret is shown once),
//! change, rotate the secret (the previous one keeps signing for an overlap), delete, retry a
//! dead letter, replay a time range of events to an endpoint.

use aggregates::organization::{Organization, OrganizationCommand, WebhookEndpointState};
use aggregates::process::{Process, ProcessCommand};
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde_json::json;
use uuid::Uuid;

use super::{organizations, AppError, Caller};
use crate::processes::webhooks::{self, events};
use crate::processes::work;
use crate::state::AppState;

/// How long a rotated-out secret keeps signing, unless the caller says otherwise.
pub const DEFAULT_OVERLAP_HOURS: i64 = 24;
/// The most events one replay may send.
pub const MAX_REPLAY: usize = 10_000;

pub struct NewEndpoint {
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub enabled: bool,
}

pub struct Changes {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// A new Standard Webhooks signing secret (`whsec_` + base64 of 24 random bytes).
pub fn new_secret() -> String {
    let mut key = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut key);
    wire::standard_webhooks::secret_for(&key)
}

/// A customer's URL, checked against the egress policy (https, public addresses).
pub fn check_url(state: &AppState, url: &str) -> Result<String, AppError> {
    let url = url.trim();
    state
        .config
        .egress
        .check_url(url)
        .map(|_| url.to_string())
        .map_err(|err| {
            AppError::invalid("invalid_url", err.to_string())
                .with_details(json!({ "field": "url", "parameter": "url" }))
        })
}

/// The endpoint and its plaintext secret (opened from the log, so a retried create with the
/// same idempotency key answers the same secret).
pub fn revealed(
    state: &AppState,
    org: &Organization,
    endpoint_id: &str,
) -> Result<(WebhookEndpointState, String), AppError> {
    let endpoint = org
        .webhook_endpoint_details
        .get(endpoint_id)
        .cloned()
        .ok_or_else(|| AppError::not_found("webhook_endpoint_not_found", "no such endpoint"))?;
    let secret = state
        .secrets
        .open(&endpoint.secret)
        .map_err(AppError::internal)?;
    Ok((endpoint, secret))
}

pub async fn create(
    state: &AppState,
    caller: &Caller,
    new: NewEndpoint,
    client_key: Option<&str>,
) -> Result<(String, i64, Organization), AppError> {
    let url = check_url(state, &new.url)?;
    // A retried request (same key) names the same endpoint, so it is created once.
    let endpoint_id = match client_key {
        Some(key) => format!(
            "we_{}",
            Uuid::new_v5(
                &Uuid::NAMESPACE_OID,
                format!("{}:{key}", caller.organization_id).as_bytes()
            )
            .simple()
        ),
        None => format!("we_{}", Uuid::new_v4().simple()),
    };
    let done = organizations::execute_as(
        state,
        caller,
        "webhook-endpoint",
        client_key,
        OrganizationCommand::CreateWebhookEndpoint {
            endpoint_id: endpoint_id.clone(),
            url,
            description: new.description,
            event_types: new.event_types,
            secret: state.secrets.seal(&new_secret()),
            enabled: new.enabled,
            actor: caller.actor.clone(),
        },
    )
    .await?;
    Ok((endpoint_id, done.result.last_position, done.state))
}

pub async fn update(
    state: &AppState,
    caller: &Caller,
    endpoint_id: &str,
    changes: Changes,
) -> Result<(i64, Organization), AppError> {
    let url = changes.url.map(|u| check_url(state, &u)).transpose()?;
    let done = organizations::execute_as(
        state,
        caller,
        "webhook-endpoint",
        None,
        OrganizationCommand::UpdateWebhookEndpoint {
            endpoint_id: endpoint_id.to_string(),
            url,
            description: changes.description,
            event_types: changes.event_types,
            enabled: changes.enabled,
            actor: caller.actor.clone(),
        },
    )
    .await?;
    Ok((done.result.last_position, done.state))
}

pub async fn rotate(
    state: &AppState,
    caller: &Caller,
    endpoint_id: &str,
    overlap_hours: i64,
    now: DateTime<Utc>,
) -> Result<(String, DateTime<Utc>, i64), AppError> {
    if !(0..=168).contains(&overlap_hours) {
        return Err(AppError::invalid(
            "invalid_overlap",
            "overlap_hours must be between 0 and 168",
        ));
    }
    let secret = new_secret();
    let until = now + chrono::Duration::hours(overlap_hours);
    let done = organizations::execute_as(
        state,
        caller,
        "webhook-endpoint",
        None,
        OrganizationCommand::RotateWebhookEndpointSecret {
            endpoint_id: endpoint_id.to_string(),
            secret: state.secrets.seal(&secret),
            previous_until: until,
            actor: caller.actor.clone(),
        },
    )
    .await?;
    Ok((secret, until, done.result.last_position))
}

pub async fn delete(state: &AppState, caller: &Caller, endpoint_id: &str) -> Result<i64, AppError> {
    let done = organizations::execute_as(
        state,
        caller,
        "webhook-endpoint",
        None,
        OrganizationCommand::RemoveWebhookEndpoint {
            endpoint_id: endpoint_id.to_string(),
            actor: caller.actor.clone(),
        },
    )
    .await?;
    Ok(done.result.last_position)
}

/// Sends a dead-lettered (or skipped) delivery again, from a fresh schedule.
pub async fn retry(state: &AppState, caller: &Caller, delivery_id: &str) -> Result<i64, AppError> {
    let stream = Process::stream_id(webhooks::KIND, delivery_id);
    let (process, _) = state.processes.load(&stream).await?;
    if !process.started || process.organization_id != Some(caller.organization_id) {
        return Err(AppError::not_found(
            "delivery_not_found",
            "no such delivery",
        ));
    }
    let meta = eventlog::CommandMeta::new(caller.actor.clone()).tenant(caller.organization_id);
    let done = state
        .processes
        .execute(
            &stream,
            ProcessCommand::Reopen {
                step: "deliver".into(),
                reason: format!("retried by {}", caller.actor),
                at: state.clock.now(),
            },
            &meta,
        )
        .await?;
    work::wake(state.store.pool(), webhooks::KIND, delivery_id).await?;
    Ok(done.result.last_position)
}

/// Replays every event of `event_types` recorded in `[from, to)` to the endpoint: new
/// deliveries (the events keep their ids), in log order in the endpoint's lane.
pub async fn replay(
    state: &AppState,
    caller: &Caller,
    endpoint_id: &str,
    event_types: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(String, usize), AppError> {
    let org = organizations::load(state, caller).await?;
    let endpoint = org
        .webhook_endpoint_details
        .get(endpoint_id)
        .ok_or_else(|| AppError::not_found("webhook_endpoint_not_found", "no such endpoint"))?;
    if from >= to {
        return Err(AppError::invalid("invalid_range", "from must be before to"));
    }
    let types: Vec<String> = if event_types.is_empty() {
        endpoint.event_types.clone()
    } else {
        event_types.to_vec()
    };
    if let Some(unknown) = aggregates::outbound::unknown_event_type(&types) {
        return Err(AppError::invalid(
            "unknown_event_type",
            format!("unknown event type `{unknown}`"),
        ));
    }
    let log_types = events::log_event_types(&types);
    let replay_id = format!("rp_{}", Uuid::new_v4().simple());
    let tenant = caller.organization_id.to_string();
    let mut after = 0;
    let mut count = 0;
    loop {
        let batch = state
            .store
            .read_tenant(
                &tenant,
                &log_types,
                from.timestamp_millis(),
                to.timestamp_millis(),
                after,
                500,
            )
            .await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        let mut starts = Vec::new();
        for stored in &batch {
            let Ok(event) =
                projections::DomainEvent::decode_payload(stored, &stored.payload.to_string())
            else {
                continue;
            };
            let Some(out) = events::outbound(stored, &event) else {
                continue;
            };
            if !types.iter().any(|t| t == out.event_type) {
                continue;
            }
            let call_sequence = (stored.aggregate_type == "call").then_some(stored.sequence);
            starts.push((
                stored.position,
                webhooks::delivery_start(
                    caller.organization_id,
                    endpoint_id,
                    &out.envelope,
                    call_sequence,
                    Some(&replay_id),
                ),
            ));
        }
        if count + starts.len() > MAX_REPLAY {
            return Err(AppError::invalid(
                "replay_too_large",
                format!("a replay may send at most {MAX_REPLAY} events; narrow the range"),
            ));
        }
        count += starts.len();
        work::insert_replay(&state.store, webhooks::KIND, &starts).await?;
    }
    Ok((replay_id, count))
}
