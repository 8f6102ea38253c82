//! Outbound webhooks: each event an organization's endpoint subscribed to is delivered by a
//! `webhook` process instance (one per event and endpoint), signed by the Standard Webhooks
//! scheme, retried on the seed's schedule (0 / 5 s / 30 s / 2 min / 10 min / 30 min / 1 h,
//! up to 10% later each), then dead-lettered.
//!
//! - The starter keeps `webhook_subscriptions` from the endpoints' events, in its own
//!   transaction, and starts one delivery per subscribed endpoint when an event becomes an
//!   outbound event ([`events`]).
//! - An endpoint is a lane: its deliveries are first attempted in log order, one at a time;
//!   a delivery waiting for its retry does not hold the others back, nor does any endpoint
//!   hold back another.
//! - 2xx is delivered; 410 Gone disables the endpoint; 429 and 503 are retried no earlier
//!   than their `Retry-After` (at most an hour); anything else is retried on the schedule.
//!   After the 7th failure the delivery is a dead letter; an endpoint with
//!   `WEBHOOK_DISABLE_AFTER` dead letters in a row is disabled and its admins are emailed.
//! - A receiver may see one delivery id twice only when a crash fell between its answer and
//!   our record of it (the attempt is then made again): receivers deduplicate on `webhook-id`.

pub mod events;
pub mod send;
pub mod subscriptions;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use aggregates::organization::{
    MemberStatus, Organization, OrganizationCommand, Role, WebhookEndpointState,
};
use aggregates::process::{RetryPolicy, StepPlan};
use async_trait::async_trait;
use eventlog::StoredEvent;
use projections::{DomainEvent, ProjectionError};
use serde_json::{json, Value};

use super::{ProcessDefinition, Start, StepContext, StepResult};
use crate::app::{self, Caller};
use crate::providers::resend::{Email, Resend};
use crate::state::AppState;

pub const KIND: &str = projections::outbound::WEBHOOK_KIND;
/// The waits after each failed attempt: the seed's Workflow 2.
pub const SCHEDULE_MS: [i64; 6] = [5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000];
pub const ATTEMPTS: u32 = 7;
/// How stale a delivery's view of its endpoint may be when another process changed it.
const ENDPOINT_STALENESS: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Webhooks {
    sender: send::Sender,
    resend: Resend,
    /// Endpoints this worker knows to have no dead letters in a row (their reset is skipped).
    clean: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Webhooks {
    pub fn new(state: &Arc<AppState>) -> Self {
        Webhooks {
            sender: send::Sender::new(&state.config),
            resend: Resend::new(state.config.resend.clone(), state.store.clone()),
            clean: Default::default(),
        }
    }
}

/// The retry policy of a delivery.
pub fn policy(timeout_ms: u64) -> RetryPolicy {
    RetryPolicy {
        max_attempts: ATTEMPTS,
        schedule_ms: SCHEDULE_MS.to_vec(),
        jitter_pct: 10,
        timeout_ms: i64::try_from(timeout_ms).unwrap_or(30_000) + 5_000,
        ..RetryPolicy::default()
    }
}

/// The lane of an endpoint's deliveries.
pub fn lane(organization: &str, endpoint: &str) -> String {
    format!("{organization}:{endpoint}")
}

/// The subscriptions read so far in one starter transaction, per organization. The starter
/// is their only writer, and an endpoint event drops its organization's entry.
type Read = HashMap<String, Vec<subscriptions::Subscription>>;

/// The deliveries `event` starts; an endpoint event updates the subscriptions instead.
async fn start_one(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    read: &mut Read,
    stored: &StoredEvent,
    event: &DomainEvent,
) -> Result<Vec<Start>, ProjectionError> {
    if let DomainEvent::Organization(org_event) = event {
        if subscriptions::apply(tx, &stored.aggregate_id, org_event).await? {
            read.remove(&stored.aggregate_id);
            return Ok(Vec::new());
        }
    }
    let Some(out) = events::outbound(stored, event) else {
        return Ok(Vec::new());
    };
    let subscribed = match read.entry(out.organization_id.to_string()) {
        Entry::Occupied(known) => known.into_mut(),
        Entry::Vacant(first) => {
            let enabled = subscriptions::enabled(tx, first.key()).await?;
            first.insert(enabled)
        }
    };
    let endpoints = subscriptions::taking(subscribed, out.event_type);
    Ok(deliveries(stored, &out, &endpoints))
}

/// The deliveries of one outbound event, one per endpoint it goes to.
fn deliveries(stored: &StoredEvent, out: &events::Outbound, endpoints: &[String]) -> Vec<Start> {
    let call_sequence = (stored.aggregate_type == "call").then_some(stored.sequence);
    endpoints
        .iter()
        .map(|endpoint| {
            delivery_start(
                out.organization_id,
                endpoint,
                &out.envelope,
                call_sequence,
                None,
            )
        })
        .collect()
}

/// A delivery's instance: the event addressed to one endpoint (`replay` names a replay).
pub fn delivery_start(
    organization: uuid::Uuid,
    endpoint: &str,
    envelope: &Value,
    call_sequence: Option<i64>,
    replay: Option<&str>,
) -> Start {
    let event_id = envelope["id"].as_str().unwrap_or_default();
    let subject = match replay {
        Some(replay) => format!("{event_id}:{endpoint}:{replay}"),
        None => format!("{event_id}:{endpoint}"),
    };
    let mut input = json!({ "endpoint_id": endpoint, "event": envelope });
    if let Some(sequence) = call_sequence {
        input["call_sequence"] = json!(sequence);
    }
    if let Some(replay) = replay {
        input["replay_id"] = json!(replay);
    }
    Start {
        subject,
        organization_id: Some(organization),
        input,
        lane: Some(lane(&organization.to_string(), endpoint)),
    }
}

fn endpoint_events(event: &DomainEvent) -> bool {
    use aggregates::organization::OrganizationEvent::*;
    matches!(
        event,
        DomainEvent::Organization(
            WebhookEndpointCreated { .. }
                | WebhookEndpointRegistered { .. }
                | WebhookEndpointUpdated { .. }
                | WebhookEndpointEnabled { .. }
                | WebhookEndpointDisabled { .. }
                | WebhookEndpointRemoved { .. }
                | OrganizationDeleted {}
        )
    )
}

#[async_trait]
impl ProcessDefinition for Webhooks {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn consumer(&self) -> &'static str {
        "process:webhook"
    }

    fn wants(&self, event: &DomainEvent) -> bool {
        endpoint_events(event) || events::may_be_outbound(event)
    }

    fn starts(&self, _stored: &StoredEvent, _event: &DomainEvent) -> Vec<Start> {
        Vec::new()
    }

    async fn start(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        stored: &StoredEvent,
        event: &DomainEvent,
    ) -> Result<Vec<Start>, ProjectionError> {
        start_one(tx, &mut Read::new(), stored, event).await
    }

    /// [`start`](Self::start) for a batch, reading each organization's subscriptions once
    /// (they were read per event: a round trip for every call event of the batch).
    async fn start_batch(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        batch: &[(StoredEvent, DomainEvent)],
    ) -> Result<Vec<Vec<Start>>, ProjectionError> {
        let mut read = Read::new();
        let mut all = Vec::with_capacity(batch.len());
        for (stored, event) in batch {
            all.push(start_one(tx, &mut read, stored, event).await?);
        }
        Ok(all)
    }

    fn plan(&self, _input: &Value, _first_backoff_ms: i64) -> Vec<StepPlan> {
        vec![StepPlan::new("deliver", policy(self.sender.timeout_ms()))]
    }

    async fn run(&self, ctx: StepContext<'_>) -> StepResult {
        let Some(caller) = ctx.caller() else {
            return StepResult::give_up("the delivery has no organization");
        };
        let input = ctx.input();
        let Some(endpoint_id) = input["endpoint_id"].as_str() else {
            return StepResult::give_up("the delivery names no endpoint");
        };
        // The endpoint as this process last read it, up to 2 s old when another process
        // changed it (this process's own changes are seen at once): one read saved per
        // delivery, the way webhook ingestion reads its organization.
        let organization = match ctx
            .state
            .organizations
            .load_within(&caller.organization_id.to_string(), ENDPOINT_STALENESS)
            .await
        {
            Ok((org, _)) if org.is_live() => org,
            Ok(_) => return StepResult::Skipped("the organization was deleted".into()),
            Err(err) => return app::AppError::from(err).into(),
        };
        let Some(endpoint) = organization.webhook_endpoint_details.get(endpoint_id) else {
            return StepResult::Skipped("the endpoint was deleted".into());
        };
        if endpoint.disabled {
            let why = endpoint.disabled_reason.as_deref().unwrap_or("by an admin");
            return StepResult::Skipped(format!("the endpoint is disabled ({why})"));
        }
        let envelope = match self.envelope(&ctx, &caller).await {
            Ok(envelope) => envelope,
            Err(failed) => return failed,
        };
        let secrets = match open_secrets(ctx.state, endpoint, ctx.now) {
            Ok(secrets) => secrets,
            Err(err) => return StepResult::retry(err),
        };
        let sent = self
            .sender
            .send(ctx.state, &endpoint.url, &secrets, &envelope, ctx.now)
            .await;
        let attempt = ctx.step.attempts + 1;
        let org = caller.organization_id.to_string();
        match sent.outcome {
            send::Outcome::Delivered => {
                self.reset_dead_letters(ctx.state, &org, endpoint_id).await;
                StepResult::Succeeded(sent.detail)
            }
            send::Outcome::Gone => {
                let reason = "the receiver answered 410 Gone";
                if let Err(err) = disable(ctx.state, &caller, endpoint_id, reason).await {
                    return err.into();
                }
                StepResult::Failed {
                    error: format!("{reason}; the endpoint was disabled"),
                    retryable: false,
                    detail: sent.detail,
                }
            }
            send::Outcome::Failed { error, retry_after } => {
                if attempt >= ATTEMPTS {
                    if let Err(failed) = self
                        .dead_letter(&ctx, &caller, &organization, endpoint_id)
                        .await
                    {
                        return failed;
                    }
                }
                match retry_after {
                    Some(at) => StepResult::Throttled {
                        error,
                        at,
                        detail: sent.detail,
                    },
                    None => StepResult::Failed {
                        error,
                        retryable: true,
                        detail: sent.detail,
                    },
                }
            }
        }
    }
}

/// The endpoint's signing secrets: the current one, and the one before a rotation while its
/// overlap lasts.
fn open_secrets(
    state: &AppState,
    endpoint: &WebhookEndpointState,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<String>, String> {
    let mut secrets = vec![state
        .secrets
        .open(&endpoint.secret)
        .map_err(|e| e.to_string())?];
    if let (Some(previous), Some(until)) = (&endpoint.previous_secret, endpoint.previous_until) {
        if until > now {
            secrets.push(state.secrets.open(previous).map_err(|e| e.to_string())?);
        }
    }
    Ok(secrets)
}

/// Disables an endpoint on the delivery process's word.
pub async fn disable(
    state: &AppState,
    caller: &Caller,
    endpoint_id: &str,
    reason: &str,
) -> Result<(), app::AppError> {
    app::organizations::execute_as(
        state,
        caller,
        "webhook-endpoint-disable",
        None,
        OrganizationCommand::DisableWebhookEndpoint {
            endpoint_id: endpoint_id.to_string(),
            reason: reason.to_string(),
            actor: caller.actor.clone(),
        },
    )
    .await
    .map(|_| ())
}

impl Webhooks {
    /// A delivery got through: the endpoint's run of dead letters ends (skipped when this
    /// worker already knows the endpoint has none).
    async fn reset_dead_letters(&self, state: &AppState, org: &str, endpoint_id: &str) {
        let key = lane(org, endpoint_id);
        if self.clean.lock().is_ok_and(|c| c.contains(&key)) {
            return;
        }
        match subscriptions::delivered(state.store.pool(), org, endpoint_id).await {
            Ok(()) => {
                if let Ok(mut clean) = self.clean.lock() {
                    clean.insert(key);
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not reset the endpoint's dead letters"),
        }
    }

    /// The envelope to send: as the starter froze it, with `call.processed` completed from
    /// the call's events up to the one it announces.
    async fn envelope(&self, ctx: &StepContext<'_>, caller: &Caller) -> Result<Value, StepResult> {
        let input = ctx.input();
        let mut envelope = input["event"].clone();
        if envelope["type"] != "call.processed" {
            return Ok(envelope);
        }
        let call_id = envelope["data"]["call_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let up_to = input["call_sequence"].as_i64().unwrap_or(i64::MAX);
        let (_, stored) = app::calls::load(ctx.state, caller, &call_id)
            .await
            .map_err(StepResult::from)?;
        let call_events: Vec<_> = stored
            .iter()
            .filter_map(|e| Some((e.sequence, ctx.state.calls.decode(e).ok()?)))
            .collect();
        envelope["data"] = events::assemble_processed(&envelope["data"], &call_events, up_to);
        Ok(envelope)
    }

    /// The delivery's last attempt failed: count the dead letter against its endpoint, and
    /// disable the endpoint (emailing its admins) when they run to the limit.
    async fn dead_letter(
        &self,
        ctx: &StepContext<'_>,
        caller: &Caller,
        organization: &Organization,
        endpoint_id: &str,
    ) -> Result<(), StepResult> {
        let org = caller.organization_id.to_string();
        let delivery = &ctx.process.subject;
        if let Ok(mut clean) = self.clean.lock() {
            clean.remove(&lane(&org, endpoint_id));
        }
        let streak =
            subscriptions::dead_lettered(ctx.state.store.pool(), &org, endpoint_id, delivery)
                .await
                .map_err(StepResult::retry)?;
        let limit = ctx.state.config.webhook_disable_after;
        if streak < limit {
            return Ok(());
        }
        let reason = format!("{streak} deliveries in a row were dead-lettered");
        disable(ctx.state, caller, endpoint_id, &reason)
            .await
            .map_err(StepResult::from)?;
        let admins: Vec<String> = organization
            .members
            .values()
            .filter(|m| matches!(m.role, Role::Owner | Role::Admin))
            .filter(|m| m.status == MemberStatus::Active)
            .map(|m| m.email.clone())
            .collect();
        if admins.is_empty() {
            return Ok(());
        }
        let url = organization
            .webhook_endpoint_details
            .get(endpoint_id)
            .map(|e| e.url.clone())
            .unwrap_or_default();
        let email = Email {
            from: crate::http::accounts::EMAIL_FROM.to_string(),
            to: admins,
            subject: format!("Webhook endpoint disabled: {url}"),
            text: format!(
                "Your CallFlex webhook endpoint {url} ({endpoint_id}) was disabled: {reason}.\n\
                 Its deliveries are listed as dead letters; fix the receiver, re-enable the \
                 endpoint and retry or replay them from the API."
            ),
            html: None,
            idempotency_key: Some(format!("webhook-disabled:{org}:{endpoint_id}:{delivery}")),
        };
        self.resend
            .send(&email)
            .await
            .map(|_| ())
            .map_err(StepResult::from_provider)
    }
}
