//! `/api/v1/webhook-endpoints`: where an organization's outbound webhooks go. Admins (and
//! write-scoped API keys) create, list, change, rotate and delete endpoints; the signing
//! secret (`whsec_…`) is shown on creation and rotation only.

use std::sync::Arc;

use aggregates::organization::WebhookEndpointState;
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::{begin, idempotency_key, require_manage};
use crate::app::webhook_endpoints::{self as app, Changes, NewEndpoint};
use crate::http::error::ApiError;
use crate::http::query::principal::OrganizationHeader;
use crate::http::ApiTags;
use crate::state::AppState;

/// A published event type.
#[derive(Debug, Object)]
pub struct EventType {
    pub name: String,
    pub description: String,
    /// What a delivery of this type carries.
    pub example: super::webhook_payloads::WebhookEvent,
}

#[derive(Debug, Object)]
pub struct EventTypeList {
    pub data: Vec<EventType>,
}

/// An outbound webhook endpoint (its secret is never shown here).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// Why it was disabled (by an admin, or by deliveries: 410 Gone, dead letters).
    pub disabled_reason: Option<String>,
    /// Until when the secret before the last rotation still signs deliveries.
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
}

fn view(id: &str, endpoint: &WebhookEndpointState) -> WebhookEndpoint {
    WebhookEndpoint {
        id: id.to_string(),
        url: endpoint.url.clone(),
        description: endpoint.description.clone(),
        event_types: endpoint.event_types.clone(),
        enabled: !endpoint.disabled,
        disabled_reason: endpoint.disabled_reason.clone(),
        previous_secret_valid_until: endpoint.previous_until,
    }
}

#[derive(Debug, Object)]
pub struct WebhookEndpointList {
    pub data: Vec<WebhookEndpoint>,
}

/// A new endpoint with its signing secret (shown only now).
#[derive(Debug, Object)]
pub struct WebhookEndpointCreated {
    pub data: WebhookEndpoint,
    /// `whsec_…`: verify deliveries with it (Standard Webhooks). Shown only now.
    pub secret: String,
    pub position: i64,
}

#[derive(Debug, Object)]
pub struct WebhookEndpointWritten {
    pub data: WebhookEndpoint,
    pub position: i64,
}

#[derive(Debug, Object)]
pub struct CreateWebhookEndpoint {
    /// https URL on the public internet.
    #[oai(validator(max_length = 2048))]
    pub url: String,
    #[oai(validator(max_length = 500))]
    pub description: Option<String>,
    /// From `GET /api/v1/webhook-endpoints/event-types`.
    #[oai(validator(min_items = 1, max_items = 50))]
    pub event_types: Vec<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

#[derive(Debug, Object)]
pub struct UpdateWebhookEndpoint {
    #[oai(validator(max_length = 2048))]
    pub url: Option<String>,
    #[oai(validator(max_length = 500))]
    pub description: Option<String>,
    #[oai(validator(min_items = 1, max_items = 50))]
    pub event_types: Option<Vec<String>>,
    /// `true` re-enables an endpoint that was disabled.
    pub enabled: Option<bool>,
}

#[derive(Debug, Object)]
pub struct RotateSecret {
    /// How long the previous secret keeps signing, 0 to 168 hours (default 24).
    pub overlap_hours: Option<i64>,
}

#[derive(Debug, Object)]
pub struct SecretRotated {
    /// The new `whsec_…` secret. Shown only now.
    pub secret: String,
    /// Deliveries carry a signature by each secret until then.
    pub previous_secret_valid_until: DateTime<Utc>,
    pub position: i64,
}

#[derive(ApiResponse)]
pub enum CreateResponse {
    /// Created.
    #[oai(status = 201)]
    Created(Json<WebhookEndpointCreated>),
}

#[derive(Debug, Object)]
pub struct Deleted {
    pub deleted: bool,
    pub position: i64,
}

pub struct WebhookEndpointsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Integrations")]
impl WebhookEndpointsApi {
    /// The event types an endpoint may subscribe to.
    #[oai(
        path = "/webhook-endpoints/event-types",
        method = "get",
        operation_id = "list_webhook_event_types"
    )]
    async fn event_types(&self) -> Json<EventTypeList> {
        Json(EventTypeList {
            data: aggregates::outbound::EVENT_TYPES
                .iter()
                .filter_map(|(name, description)| {
                    Some(EventType {
                        name: name.to_string(),
                        description: description.to_string(),
                        example: super::webhook_payloads::example(name)?,
                    })
                })
                .collect(),
        })
    }

    /// The organization's webhook endpoints.
    #[oai(
        path = "/webhook-endpoints",
        method = "get",
        operation_id = "list_webhook_endpoints"
    )]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
    ) -> Result<Json<WebhookEndpointList>, ApiError> {
        let (principal, org) = begin(&state, req, &auth).await?;
        require_manage(&principal)?;
        Ok(Json(WebhookEndpointList {
            data: org
                .webhook_endpoint_details
                .iter()
                .map(|(id, e)| view(id, e))
                .collect(),
        }))
    }

    /// Create an endpoint; its signing secret is in the answer, and only there.
    #[oai(
        path = "/webhook-endpoints",
        method = "post",
        operation_id = "create_webhook_endpoint"
    )]
    async fn create(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        body: Json<CreateWebhookEndpoint>,
    ) -> Result<CreateResponse, ApiError> {
        let (principal, _) = begin(&state, req, &auth).await?;
        require_manage(&principal)?;
        let body = body.0;
        let key = idempotency_key(req);
        let new = NewEndpoint {
            url: body.url,
            description: body.description,
            event_types: body.event_types,
            enabled: body.enabled.unwrap_or(true),
        };
        let (id, position, org) =
            app::create(&state, &principal.caller(), new, key.as_deref()).await?;
        let (endpoint, secret) = app::revealed(&state, &org, &id)?;
        Ok(CreateResponse::Created(Json(WebhookEndpointCreated {
            data: view(&id, &endpoint),
            secret,
            position,
        })))
    }

    /// One endpoint.
    #[oai(
        path = "/webhook-endpoints/:endpoint_id",
        method = "get",
        operation_id = "get_webhook_endpoint"
    )]
    async fn get(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        endpoint_id: Path<String>,
    ) -> Result<Json<WebhookEndpoint>, ApiError> {
        let (principal, org) = begin(&state, req, &auth).await?;
        require_manage(&principal)?;
        let endpoint = org
            .webhook_endpoint_details
            .get(&endpoint_id.0)
            .ok_or_else(not_found)?;
        Ok(Json(view(&endpoint_id.0, endpoint)))
    }

    /// Change an endpoint's URL, description or event types, or enable or disable it.
    #[oai(
        path = "/webhook-endpoints/:endpoint_id",
        method = "patch",
        operation_id = "update_webhook_endpoint"
    )]
    async fn update(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        endpoint_id: Path<String>,
        body: Json<UpdateWebhookEndpoint>,
    ) -> Result<Json<WebhookEndpointWritten>, ApiError> {
        let (principal, _) = begin(&state, req, &auth).await?;
        require_manage(&principal)?;
        let body = body.0;
        let changes = Changes {
            url: body.url,
            description: body.description,
            event_types: body.event_types,
            enabled: body.enabled,
        };
        let (position, org) =
            app::update(&state, &principal.caller(), &endpoint_id.0, changes).await?;
        let endpoint = org
            .webhook_endpoint_details
            .get(&endpoint_id.0)
            .ok_or_else(not_found)?;
        Ok(Json(WebhookEndpointWritten {
            data: view(&endpoint_id.0, endpoint),
            position,
        }))
    }

    /// Delete an endpoint: deliveries not yet made to it are skipped.
    #[oai(
        path = "/webhook-endpoints/:endpoint_id",
        method = "delete",
        operation_id = "delete_webhook_endpoint"
    )]
    async fn delete(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        endpoint_id: Path<String>,
    ) -> Result<Json<Deleted>, ApiError> {
        let (principal, _) = begin(&state, req, &auth).await?;
        require_manage(&principal)?;
        let position = app::delete(&state, &principal.caller(), &endpoint_id.0).await?;
        Ok(Json(Deleted {
            deleted: true,
            position,
        }))
    }

    /// A new signing secret; the previous one keeps signing (deliveries carry both
    /// signatures) for the overlap, so receivers can switch without losing a delivery.
    #[oai(
        path = "/webhook-endpoints/:endpoint_id/rotate-secret",
        method = "post",
        operation_id = "rotate_webhook_endpoint_secret"
    )]
    async fn rotate(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        endpoint_id: Path<String>,
        body: Json<RotateSecret>,
    ) -> Result<Json<SecretRotated>, ApiError> {
        let (principal, _) = begin(&state, req, &auth).await?;
        require_manage(&principal)?;
        let overlap = body.0.overlap_hours.unwrap_or(app::DEFAULT_OVERLAP_HOURS);
        let (secret, until, position) = app::rotate(
            &state,
            &principal.caller(),
            &endpoint_id.0,
            overlap,
            state.clock.now(),
        )
        .await?;
        Ok(Json(SecretRotated {
            secret,
            previous_secret_valid_until: until,
            position,
        }))
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("webhook_endpoint_not_found", "no such webhook endpoint")
}
