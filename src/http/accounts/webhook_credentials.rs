//! `GET /api/v1/organizations/{id}/webhook-credentials`, `POST .../reveal`, `POST .../rotate`.
//!
//! The secret VAPI authenticates its deliveries with, in any of its three forms
//! (`X-Vapi-Secret`, HMAC `x-signature` over `{timestamp}.{body}`, `x-vapi-signature`). It is
//! kept sealed in the log; an admin can see it once (`reveal`), and `rotate` replaces it and
//! keeps the old one valid for an overlap window, so VAPI can be switched without a gap.

use std::sync::Arc;

use aggregates::organization::{OrganizationCommand, Role};
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::organizations::{execute, for_path};
use crate::http::error::ApiError;
use crate::http::query::principal::BearerAuth;
use crate::http::ApiTags;
use crate::state::AppState;

/// Default and longest overlap of a rotation.
const DEFAULT_OVERLAP_SECS: i64 = 24 * 3600;
const MAX_OVERLAP_SECS: i64 = 30 * 24 * 3600;

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WebhookCredentials {
    /// Whether the organization has its own secret (else the service-wide one, if any).
    pub configured: bool,
    /// Whether the current secret was already shown (it is shown once).
    pub revealed: bool,
    /// Until when the secret before the last rotation is still accepted.
    pub previous_valid_until: Option<DateTime<Utc>>,
    /// Where VAPI sends this organization's deliveries.
    pub webhook_url: String,
    /// The authentication forms accepted with the secret.
    pub accepted_forms: Vec<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WebhookSecret {
    /// The secret; shown in this answer only.
    pub secret: String,
    /// After a rotation: until when the previous secret is still accepted.
    pub previous_valid_until: Option<DateTime<Utc>>,
    /// Log position written.
    pub position: i64,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Rotation {
    /// How long the previous secret stays valid (default 86400, at most 30 days; 0 ends it
    /// at once).
    #[oai(validator(minimum(value = "0"), maximum(value = "2592000")))]
    pub overlap_seconds: Option<i64>,
}

pub struct WebhookCredentialsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Organizations")]
impl WebhookCredentialsApi {
    /// The organization's VAPI webhook credentials (never the secret). Admin or owner.
    #[oai(
        path = "/organizations/:id/webhook-credentials",
        method = "get",
        operation_id = "get_webhook_credentials"
    )]
    async fn get(
        &self,
        state: Data<&Arc<AppState>>,
        auth: BearerAuth,
        /// The organization id.
        id: Path<String>,
    ) -> Result<Json<WebhookCredentials>, ApiError> {
        let principal = for_path(&state, &auth, &id.0).await?;
        principal.require_user_role(Role::Admin)?;
        let (org, _) = state.organizations.load(&principal.org()).await?;
        let auth = org.webhook_auth.unwrap_or_default();
        Ok(Json(WebhookCredentials {
            configured: auth.current().is_some(),
            revealed: auth.revealed,
            previous_valid_until: auth
                .previous_valid_until
                .filter(|until| *until > Utc::now()),
            webhook_url: format!(
                "{}/api/webhooks/vapi/{}",
                state.config.public_url.trim_end_matches('/'),
                principal.org()
            ),
            accepted_forms: vec![
                "x-vapi-secret".into(),
                "x-signature (HMAC-SHA256 of {x-timestamp}.{body})".into(),
                "x-vapi-signature (HMAC-SHA256 of the body)".into(),
            ],
        }))
    }

    /// Show the current secret, once (409 `webhook_secret_already_revealed` after that;
    /// rotate to get a new one). Admin or owner.
    #[oai(
        path = "/organizations/:id/webhook-credentials/reveal",
        method = "post",
        operation_id = "reveal_webhook_secret"
    )]
    async fn reveal(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: BearerAuth,
        /// The organization id.
        id: Path<String>,
    ) -> Result<Json<WebhookSecret>, ApiError> {
        let principal = for_path(&state, &auth, &id.0).await?;
        principal.require_user_role(Role::Admin)?;
        let command = OrganizationCommand::RevealWebhookSecret {
            actor: principal.actor(),
        };
        let position = execute(&state, req, &principal, command).await?;
        let (org, _) = state.organizations.load(&principal.org()).await?;
        let sealed = org
            .webhook_auth
            .as_ref()
            .and_then(|a| a.current())
            .ok_or_else(|| ApiError::internal("revealed secret missing"))?;
        Ok(Json(WebhookSecret {
            secret: state.secrets.open(sealed).map_err(ApiError::internal)?,
            previous_valid_until: None,
            position,
        }))
    }

    /// Replace the secret with a new one (in this answer only); the old one stays valid for
    /// `overlap_seconds`. Admin or owner.
    #[oai(
        path = "/organizations/:id/webhook-credentials/rotate",
        method = "post",
        operation_id = "rotate_webhook_secret"
    )]
    async fn rotate(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: BearerAuth,
        /// The organization id.
        id: Path<String>,
        body: Json<Rotation>,
    ) -> Result<Json<WebhookSecret>, ApiError> {
        let principal = for_path(&state, &auth, &id.0).await?;
        principal.require_user_role(Role::Admin)?;
        let overlap = body
            .0
            .overlap_seconds
            .unwrap_or(DEFAULT_OVERLAP_SECS)
            .clamp(0, MAX_OVERLAP_SECS);
        let until = Utc::now() + chrono::TimeDelta::seconds(overlap);
        let secret = crate::http::provisioning::random_secret("vapi_");
        let command = OrganizationCommand::RotateWebhookSecret {
            secret: state.secrets.seal(&secret),
            previous_valid_until: until,
            actor: principal.actor(),
        };
        let position = execute(&state, req, &principal, command).await?;
        let (org, _) = state.organizations.load(&principal.org()).await?;
        Ok(Json(WebhookSecret {
            secret,
            previous_valid_until: org.webhook_auth.and_then(|a| a.previous_valid_until),
            position,
        }))
    }
}
