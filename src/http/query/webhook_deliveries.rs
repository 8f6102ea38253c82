//! Outbound webhook deliveries (the `outbound_deliveries` and `outbound_attempts` read models):
//! an endpoint's deliveries and each attempt, the organization's dead letters; retrying one
//! delivery and replaying a time range of events to an endpoint.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use sqlx::any::AnyRow;

use crate::app::webhook_endpoints as app;
use crate::http::error::ApiError;
use crate::http::provisioning::require_manage;
use crate::http::query::pagination::{self, Keyset};
use crate::http::query::principal::OrganizationHeader;
use crate::http::query::{at, begin, Arg, Lenient, RowExt, Scope, Sql};
use crate::http::ApiTags;
use crate::state::AppState;

const STATUSES: &[&str] = &["pending", "retrying", "delivered", "dead_letter", "skipped"];

/// One event's delivery to one endpoint.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Delivery {
    pub id: String,
    pub endpoint_id: String,
    /// The event's id (its `webhook-id`).
    pub event_id: String,
    pub event_type: String,
    /// The log position of the event.
    pub event_position: i64,
    /// Set on deliveries a replay made.
    pub replay_id: Option<String>,
    /// `pending`, `retrying`, `delivered`, `dead_letter` or `skipped`.
    pub status: String,
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One attempt of a delivery.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Attempt {
    pub attempt: i64,
    pub at: DateTime<Utc>,
    pub status_code: Option<i64>,
    pub latency_ms: Option<i64>,
    pub error: Option<String>,
    /// The first bytes of the receiver's answer.
    pub response: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DeliveryPage {
    pub data: Vec<Delivery>,
    pub next_cursor: Option<String>,
    pub position: i64,
}

#[derive(Debug, Object)]
pub struct DeliveryDetail {
    pub data: Delivery,
    pub attempts: Vec<Attempt>,
    pub position: i64,
}

#[derive(Debug, Object)]
pub struct Retried {
    pub retried: bool,
    pub position: i64,
}

#[derive(Debug, Object)]
pub struct ReplayRequest {
    /// Start of the range (inclusive): when the events were recorded.
    pub from: DateTime<Utc>,
    /// End of the range (exclusive).
    pub to: DateTime<Utc>,
    /// Which types to replay (default: the endpoint's).
    #[oai(validator(max_items = 50))]
    pub event_types: Option<Vec<String>>,
}

#[derive(Debug, Object)]
pub struct ReplayStarted {
    /// Marks the deliveries the replay made (`replay_id` on each).
    pub replay_id: String,
    /// How many events will be sent again.
    pub events: i64,
}

const COLUMNS: &str = "id, endpoint_id, event_id, event_type, event_position, replay_id, status, \
     attempts, last_status_code, last_error, next_attempt_at, created_at, updated_at";

fn delivery(row: &AnyRow) -> Result<Delivery, ApiError> {
    Ok(Delivery {
        id: row.str("id")?,
        endpoint_id: row.str("endpoint_id")?,
        event_id: row.str("event_id")?,
        event_type: row.str("event_type")?,
        event_position: row.i64("event_position")?,
        replay_id: row.opt_str("replay_id")?,
        status: row.str("status")?,
        attempts: row.i64("attempts")?,
        last_status_code: row.opt_i64("last_status_code")?,
        last_error: row.opt_str("last_error")?,
        next_attempt_at: row.opt_i64("next_attempt_at")?.map(at),
        created_at: at(row.i64("created_at")?),
        updated_at: at(row.i64("updated_at")?),
    })
}

async fn page(
    state: &AppState,
    scope: &Scope,
    endpoint: Option<String>,
    status: Option<String>,
    limit: i64,
    cursor: Option<Keyset>,
) -> Result<DeliveryPage, ApiError> {
    let mut sql = Sql::new(format!(
        "SELECT {COLUMNS} FROM outbound_deliveries WHERE organization_id = "
    ));
    let o = sql.arg(Arg::Str(scope.org()));
    sql.push(&o);
    if let Some(endpoint) = endpoint {
        let e = sql.arg(Arg::Str(endpoint));
        sql.push(&format!(" AND endpoint_id = {e}"));
    }
    if let Some(status) = status {
        let s = sql.arg(Arg::Str(status));
        sql.push(&format!(" AND status = {s}"));
    }
    if let Some(cursor) = cursor {
        let k = sql.arg(Arg::I64(cursor.key));
        let k2 = sql.arg(Arg::I64(cursor.key));
        let i = sql.arg(Arg::Str(cursor.id));
        sql.push(&format!(
            " AND (created_at < {k} OR (created_at = {k2} AND id < {i}))"
        ));
    }
    let l = sql.arg(Arg::I64(limit + 1));
    sql.push(&format!(" ORDER BY created_at DESC, id DESC LIMIT {l}"));
    let mut data = sql
        .fetch_all(state)
        .await?
        .iter()
        .map(delivery)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if data.len() as i64 > limit {
        data.truncate(limit as usize);
        data.last().map(|last| {
            Keyset {
                key: last.created_at.timestamp_millis(),
                id: last.id.clone(),
            }
            .encode()
        })
    } else {
        None
    };
    Ok(DeliveryPage {
        data,
        next_cursor,
        position: scope.position,
    })
}

fn status_filter(status: Option<String>) -> Result<Option<String>, ApiError> {
    match status.map(|s| s.trim().to_string()) {
        None => Ok(None),
        Some(s) if STATUSES.contains(&s.as_str()) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_parameter(
            "status",
            format!("status must be one of {}", STATUSES.join(", ")),
        )),
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("delivery_not_found", "no such delivery")
}

pub struct WebhookDeliveriesApi;

type PageSize = Query<Option<Lenient<crate::http::query::position::PageSize>>>;
type MinPosition = Query<Option<Lenient<crate::http::query::position::Position>>>;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Integrations")]
impl WebhookDeliveriesApi {
    /// An endpoint's deliveries, newest first.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/webhook-endpoints/:endpoint_id/deliveries",
        method = "get",
        operation_id = "list_webhook_deliveries"
    )]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        endpoint_id: Path<String>,
        /// Page size, 1 to 100 (default 25).
        limit: PageSize,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// `pending`, `retrying`, `delivered`, `dead_letter` or `skipped`.
        status: Query<Option<String>>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: MinPosition,
    ) -> Result<Json<DeliveryPage>, ApiError> {
        let scope = begin(
            &state,
            req,
            &auth,
            &["limit", "cursor", "status"],
            min_position.0,
        )
        .await?;
        require_manage(&scope.principal)?;
        let limit = pagination::limit(limit.0)?;
        let cursor = pagination::keyset(cursor.0.as_deref())?;
        let status = status_filter(status.0)?;
        Ok(Json(
            page(&state, &scope, Some(endpoint_id.0), status, limit, cursor).await?,
        ))
    }

    /// The organization's dead letters (deliveries that spent their attempts), newest first.
    #[oai(
        path = "/webhook-dead-letters",
        method = "get",
        operation_id = "list_webhook_dead_letters"
    )]
    async fn dead_letters(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// Page size, 1 to 100 (default 25).
        limit: PageSize,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: MinPosition,
    ) -> Result<Json<DeliveryPage>, ApiError> {
        let scope = begin(&state, req, &auth, &["limit", "cursor"], min_position.0).await?;
        require_manage(&scope.principal)?;
        let limit = pagination::limit(limit.0)?;
        let cursor = pagination::keyset(cursor.0.as_deref())?;
        Ok(Json(
            page(
                &state,
                &scope,
                None,
                Some("dead_letter".into()),
                limit,
                cursor,
            )
            .await?,
        ))
    }

    /// One delivery with every attempt (time, status code, latency, error, first bytes).
    #[oai(
        path = "/webhook-endpoints/:endpoint_id/deliveries/:delivery_id",
        method = "get",
        operation_id = "get_webhook_delivery"
    )]
    async fn get(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        endpoint_id: Path<String>,
        delivery_id: Path<String>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: MinPosition,
    ) -> Result<Json<DeliveryDetail>, ApiError> {
        let scope = begin(&state, req, &auth, &[], min_position.0).await?;
        require_manage(&scope.principal)?;
        let mut sql = Sql::new(format!(
            "SELECT {COLUMNS} FROM outbound_deliveries WHERE id = "
        ));
        let d = sql.arg(Arg::Str(delivery_id.0.clone()));
        let o = sql.arg(Arg::Str(scope.org()));
        let e = sql.arg(Arg::Str(endpoint_id.0));
        sql.push(&format!(
            "{d} AND organization_id = {o} AND endpoint_id = {e}"
        ));
        let row = sql.fetch_all(&state).await?;
        let data = delivery(row.first().ok_or_else(not_found)?)?;
        let mut sql = Sql::new(
            "SELECT attempt, at, status_code, latency_ms, error, response FROM outbound_attempts \
             WHERE delivery_id = "
                .to_string(),
        );
        let d = sql.arg(Arg::Str(delivery_id.0));
        let o = sql.arg(Arg::Str(scope.org()));
        sql.push(&format!("{d} AND organization_id = {o} ORDER BY position"));
        let attempts = sql
            .fetch_all(&state)
            .await?
            .iter()
            .map(|row| {
                Ok(Attempt {
                    attempt: row.i64("attempt")?,
                    at: at(row.i64("at")?),
                    status_code: row.opt_i64("status_code")?,
                    latency_ms: row.opt_i64("latency_ms")?,
                    error: row.opt_str("error")?,
                    response: row.opt_str("response")?,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(Json(DeliveryDetail {
            data,
            attempts,
            position: scope.position,
        }))
    }

    /// Send a dead-lettered (or skipped) delivery again, from a fresh schedule.
    #[oai(
        path = "/webhook-endpoints/:endpoint_id/deliveries/:delivery_id/retry",
        method = "post",
        operation_id = "retry_webhook_delivery"
    )]
    async fn retry(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        endpoint_id: Path<String>,
        delivery_id: Path<String>,
    ) -> Result<Json<Retried>, ApiError> {
        let scope = begin(&state, req, &auth, &[], None).await?;
        require_manage(&scope.principal)?;
        if !delivery_id.0.contains(&format!(":{}", endpoint_id.0)) {
            return Err(not_found());
        }
        let position = app::retry(&state, &scope.principal.caller(), &delivery_id.0).await?;
        Ok(Json(Retried {
            retried: true,
            position,
        }))
    }

    /// Send every event of the chosen types recorded in a time range to the endpoint again
    /// (the events keep their ids, so receivers can tell a replay from a new event).
    #[oai(
        path = "/webhook-endpoints/:endpoint_id/replay",
        method = "post",
        operation_id = "replay_webhook_events"
    )]
    async fn replay(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        endpoint_id: Path<String>,
        body: Json<ReplayRequest>,
    ) -> Result<Json<ReplayStarted>, ApiError> {
        let scope = begin(&state, req, &auth, &[], None).await?;
        require_manage(&scope.principal)?;
        let body = body.0;
        let (replay_id, events) = app::replay(
            &state,
            &scope.principal.caller(),
            &endpoint_id.0,
            &body.event_types.unwrap_or_default(),
            body.from,
            body.to,
        )
        .await?;
        Ok(Json(ReplayStarted {
            replay_id,
            events: events as i64,
        }))
    }
}
