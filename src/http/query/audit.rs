//! The audit trail for owners, admins and auditors (personal data masked for auditors; see
//! `app::audit`): `GET /api/v1/audit` (the organization's activity, filtered),
//! `/audit/{kind}/{id}` (one stream's history, or a user's), `/audit/{kind}/{id}/state` (the
//! state as of a time). Each event with time, type, resolved actor, correlation and
//! causation ids and its data (secrets masked); keyset pages.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::app::audit::{self, AuditEvent};
use crate::http::error::ApiError;
use crate::http::query::principal::OrganizationHeader;
use crate::http::query::{begin, Lenient};
use crate::http::ApiTags;
use crate::state::AppState;

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditEntry {
    /// The event's place in its stream (1, 2, …).
    pub sequence: i64,
    /// Its place in the whole log.
    pub position: i64,
    #[oai(rename = "type")]
    pub event_type: String,
    pub at: DateTime<Utc>,
    /// Who: `{kind: user, id, email}`, `{kind: api_key, id, name}`,
    /// `{kind: provider, provider, delivery}` or `{kind: system, what}`.
    pub actor: serde_json::Value,
    /// Shared by every event of one request or delivery.
    pub correlation_id: String,
    pub causation_id: Option<String>,
    /// The event as recorded, secrets shown as `***`.
    pub data: serde_json::Value,
}

impl From<AuditEvent> for AuditEntry {
    fn from(e: AuditEvent) -> Self {
        AuditEntry {
            sequence: e.sequence,
            position: e.position,
            event_type: e.event_type,
            at: e.at,
            actor: e.actor,
            correlation_id: e.correlation_id,
            causation_id: e.causation_id,
            data: e.data,
        }
    }
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditPage {
    pub data: Vec<AuditEntry>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

impl AuditPage {
    /// The first `limit` of `events` (fetched one more than a page, to know if more follow).
    fn of(mut events: Vec<AuditEvent>, limit: i64, by_position: bool) -> AuditPage {
        let more = events.len() as i64 > limit;
        events.truncate(limit as usize);
        let next_after =
            events
                .last()
                .filter(|_| more)
                .map(|e| if by_position { e.position } else { e.sequence });
        AuditPage {
            data: events.into_iter().map(AuditEntry::from).collect(),
            next_after,
        }
    }
}

/// `limit` checked (1 to 500, default 100) and `after` (default 0).
fn page_bounds(
    after: Query<Option<Lenient<i64>>>,
    limit: Query<Option<Lenient<i64>>>,
) -> Result<(i64, i64), ApiError> {
    let after = after
        .0
        .map(|a| a.get("after"))
        .transpose()?
        .unwrap_or(0)
        .max(0);
    let limit = limit.0.map(|l| l.get("limit")).transpose()?.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_parameter("limit", "limit must be 1 to 500"));
    }
    Ok((after, limit))
}

/// One provider delivery that built a call.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DeliveryEntry {
    /// `vapi`, `twilio` or `stripe`.
    pub provider: String,
    /// The ledger's key for it (VAPI: a hash of organization and body; Twilio: CallSid,
    /// status and sequence; Stripe: the event id). Events it recorded name it as their
    /// actor's delivery.
    pub key: String,
    pub received_at: DateTime<Utc>,
    /// The provider's message type (VAPI `status-update`, Twilio `completed`, …).
    pub message_type: Option<String>,
    /// Our answer: its status code and body. Status 0 with a `null` body: the delivery's
    /// row was committed with its events but the service stopped before recording the
    /// answer (a redelivery gets the same answer from the commands' idempotency keys).
    pub status_code: i64,
    pub response: serde_json::Value,
    /// Where its events landed in the log (0 when it recorded none) and how many.
    pub first_position: i64,
    pub last_position: i64,
    pub event_count: i64,
    pub content_type: Option<String>,
    /// The raw body (JSON as JSON, a form as its fields); personal data masked for auditors.
    pub body: serde_json::Value,
}

#[derive(Debug, Object)]
pub struct DeliveryList {
    pub data: Vec<DeliveryEntry>,
}

#[derive(Debug, Object)]
pub struct HistoricalState {
    /// Always true: this is what the log held then, not the current state.
    pub historical: bool,
    /// The state folded from the stream's events up to the point asked (secrets `***`).
    pub data: serde_json::Value,
    /// The last event folded: its sequence in the stream and position in the log (0: none).
    pub sequence: i64,
    pub position: i64,
}

pub struct AuditApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Organizations")]
impl AuditApi {
    /// The organization's activity (owners, admins and auditors): every event of every
    /// stream of the organization, by log position, narrowed by actor (`user:<id>`,
    /// `api_key:<id>`, or a prefix such as `provider:vapi` or `system`), stream kind, event
    /// type and record time `[from, to)`.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/audit", method = "get", operation_id = "audit_activity")]
    async fn activity(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// An actor, or an actor's prefix up to a colon.
        actor: Query<Option<String>>,
        /// The stream kind: `call`, `organization`, `subscription`, …
        kind: Query<Option<String>>,
        /// An event type, e.g. `MemberRoleChanged`.
        #[oai(name = "type")]
        event_type: Query<Option<String>>,
        /// RFC 3339: events recorded at or after this time.
        from: Query<Option<Lenient<DateTime<Utc>>>>,
        /// RFC 3339: events recorded before this time.
        to: Query<Option<Lenient<DateTime<Utc>>>>,
        /// Events after this log position (`next_after` of the previous page).
        after: Query<Option<Lenient<i64>>>,
        /// Page size, 1 to 500 (default 100).
        limit: Query<Option<Lenient<i64>>>,
    ) -> Result<Json<AuditPage>, ApiError> {
        let params = ["actor", "kind", "type", "from", "to", "after", "limit"];
        let scope = begin(&state, req, &auth, &params, None).await?;
        let view = scope.principal.audit_view()?;
        let (after, limit) = page_bounds(after, limit)?;
        let from = from.0.map(|f| f.get("from")).transpose()?;
        let to = to.0.map(|t| t.get("to")).transpose()?;
        if let (Some(from), Some(to)) = (from, to) {
            if from > to {
                return Err(ApiError::bad_parameter("from", "from must not be after to"));
            }
        }
        let text = |value: Option<String>| {
            value
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let filter = eventlog::ActivityFilter {
            actor: text(actor.0),
            aggregate_type: text(kind.0),
            event_type: text(event_type.0),
            from_ms: from.map(|t| t.timestamp_millis()),
            to_ms: to.map(|t| t.timestamp_millis()),
        };
        let caller = scope.principal.caller();
        let events = audit::activity(&state, &caller, view, &filter, after, limit + 1).await?;
        Ok(Json(AuditPage::of(events, limit, true)))
    }

    /// A stream's history (owners, admins, auditors): `kind` is `call`, `organization`,
    /// `subscription` or `user` (every event the user caused here, paged by log position);
    /// another organization's stream answers 404 like a missing one.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/audit/:kind/:id",
        method = "get",
        operation_id = "audit_stream"
    )]
    async fn stream(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// `call`, `organization` or `subscription`.
        kind: Path<String>,
        /// The call, organization or Stripe subscription id.
        id: Path<String>,
        /// Events after this sequence (`next_after` of the previous page).
        after: Query<Option<Lenient<i64>>>,
        /// Page size, 1 to 500 (default 100).
        limit: Query<Option<Lenient<i64>>>,
    ) -> Result<Json<AuditPage>, ApiError> {
        let scope = begin(&state, req, &auth, &["after", "limit"], None).await?;
        let view = scope.principal.audit_view()?;
        let (after, limit) = page_bounds(after, limit)?;
        let caller = scope.principal.caller();
        let events = audit::stream(&state, &caller, view, &kind.0, &id.0, after, limit + 1).await?;
        // A user's history spans streams: its pages go by log position.
        let by_position = kind.0 == "user";
        Ok(Json(AuditPage::of(events, limit, by_position)))
    }

    /// The provider deliveries that built a call (owners, admins, auditors), in the order
    /// received, with the answer each got and its raw body: what `callflex redeliver`
    /// replays.
    #[oai(
        path = "/audit/call/:id/deliveries",
        method = "get",
        operation_id = "audit_call_deliveries"
    )]
    async fn deliveries(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The call's id.
        id: Path<String>,
    ) -> Result<Json<DeliveryList>, ApiError> {
        let scope = begin(&state, req, &auth, &[], None).await?;
        let view = scope.principal.audit_view()?;
        let caller = scope.principal.caller();
        let found = audit::deliveries(&state, &caller, view, &id.0).await?;
        let data = found
            .into_iter()
            .map(|d| DeliveryEntry {
                provider: d.delivery.provider,
                key: d.delivery.key,
                received_at: DateTime::from_timestamp_millis(d.delivery.received_at)
                    .unwrap_or_default(),
                message_type: d.delivery.message_type,
                status_code: d.delivery.status_code,
                response: d.response,
                first_position: d.delivery.first_position,
                last_position: d.delivery.last_position,
                event_count: d.delivery.event_count,
                content_type: d.delivery.content_type,
                body: d.body,
            })
            .collect();
        Ok(Json(DeliveryList { data }))
    }

    /// A stream's state as of a time and/or a log position (owners, admins, auditors): the
    /// aggregate folded from its events recorded up to then, marked historical.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/audit/:kind/:id/state",
        method = "get",
        operation_id = "audit_state_as_of"
    )]
    async fn state(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// `call`, `organization` or `subscription`.
        kind: Path<String>,
        /// The call, organization or Stripe subscription id.
        id: Path<String>,
        /// RFC 3339: fold the events recorded up to this time.
        as_of: Query<Option<Lenient<DateTime<Utc>>>>,
        /// Fold the events up to this log position.
        as_of_position: Query<Option<Lenient<i64>>>,
    ) -> Result<Json<HistoricalState>, ApiError> {
        let scope = begin(&state, req, &auth, &["as_of", "as_of_position"], None).await?;
        let view = scope.principal.audit_view()?;
        let as_of = as_of.0.map(|a| a.get("as_of")).transpose()?;
        let position = as_of_position
            .0
            .map(|p| p.get("as_of_position"))
            .transpose()?;
        if as_of.is_none() && position.is_none() {
            return Err(ApiError::bad_parameter(
                "as_of",
                "give as_of (RFC 3339) or as_of_position",
            ));
        }
        let caller = scope.principal.caller();
        let (data, sequence, position) =
            audit::state_as_of(&state, &caller, view, &kind.0, &id.0, as_of, position).await?;
        Ok(Json(HistoricalState {
            historical: true,
            data,
            sequence,
            position,
        }))
    }
}
