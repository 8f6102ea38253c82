//! `GET /api/v1/integrations`, `POST /api/v1/integrations/{provider}/connect`,
//! `PATCH/DELETE /api/v1/integrations/{provider}` and
//! `POST /api/v1/integrations/{provider}/test`.
//!
//! - `webhook` and `zapier`: connecting registers the target URL with a generated signing
//!   secret (shown once); deliveries carry `X-CallFlex-Signature: sha256=<hex HMAC-SHA256 of
//!   the body>`.
//! - `google_calendar` and `hubspot` (OAuth): connecting records a `state` (its SHA-256 on
//!   the Organization aggregate, `IntegrationAuthorizationStarted`, valid 10 minutes) and
//!   answers the provider's authorization URL. The provider redirects the user's browser to
//!   `GET /api/v1/integrations/{provider}/callback?code=..&state=..`, which uses the state up
//!   (`IntegrationAuthorizationUsed`: single use holds by optimistic concurrency), exchanges
//!   the code at the provider's token URL, keeps the tokens in `integration_credentials`
//!   and records `IntegrationConnected` (without them). Without client credentials the
//!   exchange runs in sandbox mode, and every answer says `sandbox: true`.

use std::sync::Arc;

use aggregates::organization::{Organization, OrganizationCommand};
use hmac::{Hmac, Mac};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{json, Value};
use sha2::Sha256;

use super::{begin, execute, provider_error, random_secret};
use crate::auth::token_hash;
use crate::http::error::ApiError;
use crate::http::query::principal::OrganizationHeader;
use crate::http::ApiTags;
use crate::providers::oauth::{self, OAuthClient};
use crate::state::AppState;

const WEBHOOK_PROVIDERS: [&str; 2] = ["webhook", "zapier"];
const OAUTH_PROVIDERS: [&str; 2] = ["google_calendar", "hubspot"];
pub const SIGNATURE_HEADER: &str = "X-CallFlex-Signature";

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Integration {
    pub provider: String,
    /// `webhook` (signed HTTP deliveries) or `oauth`.
    pub kind: String,
    pub connected: bool,
    /// The configuration (never the signing secret).
    pub config: Option<Value>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct IntegrationList {
    pub data: Vec<Integration>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ConnectIntegration {
    /// Target URL (`webhook`, `zapier`).
    pub url: Option<String>,
    /// Event types to deliver (default: all).
    pub event_types: Option<Vec<String>>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct IntegrationConnected {
    pub data: Integration,
    /// The signing secret of a webhook integration: shown only now.
    pub signing_secret: Option<String>,
    /// Where to send the user to authorize an OAuth integration (its `state` is valid for
    /// 10 minutes, once).
    pub authorization_url: Option<String>,
    pub position: i64,
    /// True when the OAuth provider runs in sandbox mode (no client credentials configured:
    /// the callback fakes the tokens instead of asking the provider).
    pub sandbox: bool,
}

/// The OAuth callback's answer.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct IntegrationAuthorized {
    pub data: Integration,
    pub position: i64,
    /// True when the code was not exchanged (sandbox mode: fake tokens).
    pub sandbox: bool,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct IntegrationChanges {
    /// New target URL (`webhook`, `zapier`).
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct IntegrationWritten {
    pub data: Integration,
    pub position: i64,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct IntegrationTest {
    /// True when the target answered 2xx.
    pub delivered: bool,
    /// The target's HTTP status (absent when it could not be reached).
    pub status: Option<u16>,
    pub error: Option<String>,
    /// The signature header sent (webhook integrations).
    pub signature: Option<String>,
    /// OAuth integrations: true when the stored token is a sandbox one and nothing was sent.
    pub sandbox: Option<bool>,
}

#[derive(ApiResponse)]
pub enum DisconnectResponse {
    /// Disconnected. `X-Position` is the log position written.
    #[oai(status = 204)]
    Disconnected(#[oai(header = "X-Position")] i64),
}

fn kind(provider: &str) -> Result<&'static str, ApiError> {
    if WEBHOOK_PROVIDERS.contains(&provider) {
        Ok("webhook")
    } else if OAUTH_PROVIDERS.contains(&provider) {
        Ok("oauth")
    } else {
        Err(ApiError::not_found(
            "unknown_integration",
            format!(
                "unknown integration `{provider}`; known: {}, {}",
                WEBHOOK_PROVIDERS.join(", "),
                OAUTH_PROVIDERS.join(", ")
            ),
        ))
    }
}

fn endpoint_id(provider: &str) -> String {
    format!("integration:{provider}")
}

fn view(org: &Organization, provider: &str) -> Result<Integration, ApiError> {
    Ok(Integration {
        provider: provider.to_string(),
        kind: kind(provider)?.to_string(),
        connected: org.integrations.get(provider).copied().unwrap_or(false),
        config: org.integration_configs.get(provider).cloned(),
    })
}

/// A customer's target URL, checked against the egress policy (https, public addresses).
fn target_url(state: &AppState, url: Option<&str>) -> Result<String, ApiError> {
    Ok(crate::app::webhook_endpoints::check_url(
        state,
        url.unwrap_or_default(),
    )?)
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// How long an OAuth `state` may be used.
const STATE_TTL: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

fn redirect_uri(state: &AppState, provider: &str) -> String {
    format!(
        "{}/api/v1/integrations/{provider}/callback",
        state.config.public_url
    )
}

fn oauth_config<'a>(state: &'a AppState, provider: &str) -> &'a crate::config::OAuthConfig {
    match provider {
        "google_calendar" => &state.config.google,
        _ => &state.config.hubspot,
    }
}

fn oauth_client(state: &AppState, provider: &str) -> OAuthClient {
    let name = if provider == "google_calendar" {
        "google_calendar"
    } else {
        "hubspot"
    };
    OAuthClient::new(name, oauth_config(state, provider), state.store.clone())
}

fn invalid_state(message: &str) -> ApiError {
    ApiError::bad_request("invalid_state", message)
}

fn authorization_url(state: &AppState, provider: &str, nonce: &str) -> String {
    let redirect = redirect_uri(state, provider);
    let client = oauth_config(state, provider).client_id.clone();
    let (base, scope) = match provider {
        "google_calendar" => (
            "https://accounts.google.com/o/oauth2/v2/auth",
            "https://www.googleapis.com/auth/calendar.events",
        ),
        _ => (
            "https://app.hubspot.com/oauth/authorize",
            "crm.objects.contacts.write crm.objects.contacts.read",
        ),
    };
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair(
            "client_id",
            &client.unwrap_or_else(|| "callflex-sandbox".into()),
        )
        .append_pair("redirect_uri", &redirect)
        .append_pair("response_type", "code")
        .append_pair("scope", scope)
        .append_pair("access_type", "offline")
        .append_pair("state", nonce)
        .finish();
    format!("{base}?{query}")
}

pub struct IntegrationsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Integrations")]
impl IntegrationsApi {
    /// Every known integration and whether it is connected.
    #[oai(
        path = "/integrations",
        method = "get",
        operation_id = "list_integrations"
    )]
    async fn list_integrations(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
    ) -> Result<Json<IntegrationList>, ApiError> {
        let (_, org) = begin(&state, req, &auth).await?;
        let data = WEBHOOK_PROVIDERS
            .iter()
            .chain(OAUTH_PROVIDERS.iter())
            .map(|p| view(&org, p))
            .collect::<Result<_, _>>()?;
        Ok(Json(IntegrationList { data }))
    }

    /// Connect an integration: registers a webhook target (secret shown once) or answers an
    /// OAuth authorization URL.
    #[oai(
        path = "/integrations/:provider/connect",
        method = "post",
        operation_id = "connect_integration"
    )]
    async fn connect_integration(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// `webhook`, `zapier`, `google_calendar` or `hubspot`.
        provider: Path<String>,
        body: Json<ConnectIntegration>,
    ) -> Result<Json<IntegrationConnected>, ApiError> {
        let (principal, _) = begin(&state, req, &auth).await?;
        super::require_manage(&principal)?;
        let provider = provider.0;
        if kind(&provider)? == "oauth" {
            // `<organization>.<64 random hex>`: the callback finds the organization from it
            // and the aggregate knows only its hash.
            let state_param = random_secret(&format!("{}.", principal.organization_id));
            let (position, org) = execute(
                &state,
                &principal,
                OrganizationCommand::StartIntegrationAuthorization {
                    provider: provider.clone(),
                    state_hash: token_hash(&state_param),
                    expires_at: chrono::Utc::now() + STATE_TTL,
                    actor: principal.actor(),
                },
                None,
            )
            .await?;
            return Ok(Json(IntegrationConnected {
                data: view(&org, &provider)?,
                signing_secret: None,
                authorization_url: Some(authorization_url(&state, &provider, &state_param)),
                position,
                sandbox: oauth_config(&state, &provider).sandbox(),
            }));
        }
        let url = target_url(&state, body.0.url.as_deref())?;
        let event_types = body.0.event_types.unwrap_or_default();
        let secret = crate::app::webhook_endpoints::new_secret();
        let endpoint = endpoint_id(&provider);
        execute(
            &state,
            &principal,
            OrganizationCommand::RegisterWebhookEndpoint {
                endpoint_id: endpoint.clone(),
                url: url.clone(),
                // Sealed: the log never holds the signing secret in plaintext.
                secret: state.secrets.seal(&secret),
                event_types: event_types.clone(),
                actor: principal.actor(),
            },
            None,
        )
        .await?;
        let (position, org) = execute(
            &state,
            &principal,
            OrganizationCommand::ConnectIntegration {
                provider: provider.clone(),
                config: json!({ "url": url, "endpoint_id": endpoint, "event_types": event_types }),
                actor: principal.actor(),
            },
            None,
        )
        .await?;
        Ok(Json(IntegrationConnected {
            data: view(&org, &provider)?,
            signing_secret: Some(secret),
            authorization_url: None,
            position,
            sandbox: false,
        }))
    }

    /// The OAuth redirect target (`google_calendar`, `hubspot`): no bearer token, the
    /// single-use `state` from `connect` identifies the organization.
    ///
    /// The state is used up first, then the code is exchanged at the provider's token URL;
    /// the tokens are stored (never shown) and `IntegrationConnected` is recorded. 400
    /// `invalid_state` (unknown, malformed or already used), `expired_state` (older than 10
    /// minutes), `invalid_input` (no `code`), `authorization_denied` (the provider sent
    /// `error`); 502 `provider_rejected` / 503 `provider_unavailable` when the exchange fails
    /// (nothing is connected; start again with `connect`).
    #[oai(
        path = "/integrations/:provider/callback",
        method = "get",
        operation_id = "integration_oauth_callback"
    )]
    async fn oauth_callback(
        &self,
        state: Data<&Arc<AppState>>,
        /// `google_calendar` or `hubspot`.
        provider: Path<String>,
        /// The authorization code.
        code: Query<Option<String>>,
        /// The `state` from the authorization URL.
        #[oai(name = "state")]
        oauth_state: Query<Option<String>>,
        /// Set by the provider when the user refused.
        error: Query<Option<String>>,
    ) -> Result<Json<IntegrationAuthorized>, ApiError> {
        let provider = provider.0;
        if kind(&provider)? != "oauth" {
            return Err(ApiError::not_found(
                "unknown_integration",
                format!("`{provider}` is not an OAuth integration"),
            ));
        }
        let state_param = oauth_state
            .0
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let org_id = state_param
            .split_once('.')
            .and_then(|(org, _)| uuid::Uuid::parse_str(org).ok())
            .filter(|_| state_param.len() <= 200)
            .ok_or_else(|| invalid_state("the state parameter is missing or malformed"))?;
        let code = code
            .0
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty());
        if error.0.is_none() && code.is_none() {
            return Err(
                ApiError::bad_request("invalid_input", "the code parameter is missing")
                    .with_details(json!({ "parameter": "code" })),
            );
        }
        let org = org_id.to_string();
        let (organization, _) = state.organizations.load(&org).await?;
        if !organization.is_live() {
            return Err(invalid_state("the state parameter is unknown"));
        }
        let actor = format!("system:oauth-callback:{provider}");
        let caller = crate::app::Caller::new(actor.clone(), org_id);
        let run = |command| {
            let state = state.0.clone();
            let caller = caller.clone();
            async move {
                crate::app::organizations::execute_as(&state, &caller, "oauth", None, command)
                    .await
                    .map_err(ApiError::from)
            }
        };
        // Used up BEFORE the exchange: a replayed callback never reaches the provider.
        run(OrganizationCommand::UseIntegrationAuthorization {
            provider: provider.clone(),
            state_hash: token_hash(&state_param),
            at: chrono::Utc::now(),
            actor: actor.clone(),
        })
        .await?;
        if let Some(refused) = error.0 {
            return Err(ApiError::bad_request(
                "authorization_denied",
                "the provider did not authorize the integration",
            )
            .with_details(json!({ "provider_error": refused })));
        }
        let code = code.unwrap_or_default();
        let tokens = oauth_client(&state, &provider)
            .exchange(&code, &redirect_uri(&state, &provider), &org)
            .await
            .map_err(provider_error)?;
        oauth::store_tokens(&state.store, &org, &provider, &tokens).await?;
        let done = run(OrganizationCommand::ConnectIntegration {
            provider: provider.clone(),
            config: oauth::describe(&tokens),
            actor,
        })
        .await?;
        Ok(Json(IntegrationAuthorized {
            data: view(&done.state, &provider)?,
            position: done.result.last_position,
            sandbox: tokens.sandbox,
        }))
    }

    /// Change a connected webhook integration's URL or event types (the secret stays).
    #[oai(
        path = "/integrations/:provider",
        method = "patch",
        operation_id = "update_integration"
    )]
    async fn update_integration(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The integration.
        provider: Path<String>,
        body: Json<IntegrationChanges>,
    ) -> Result<Json<IntegrationWritten>, ApiError> {
        let (principal, org) = begin(&state, req, &auth).await?;
        super::require_manage(&principal)?;
        let provider = provider.0;
        let current = view(&org, &provider)?;
        if !current.connected {
            return Err(ApiError::not_found(
                "integration_not_found",
                "the integration is not connected",
            ));
        }
        let mut config = current.config.unwrap_or_else(|| json!({}));
        let endpoint = endpoint_id(&provider);
        if let Some(details) = org.webhook_endpoint_details.get(&endpoint) {
            let url = match body.0.url.as_deref() {
                Some(u) => target_url(&state, Some(u))?,
                None => details.url.clone(),
            };
            let event_types = body
                .0
                .event_types
                .clone()
                .unwrap_or_else(|| details.event_types.clone());
            execute(
                &state,
                &principal,
                OrganizationCommand::RegisterWebhookEndpoint {
                    endpoint_id: endpoint,
                    url: url.clone(),
                    secret: details.secret.clone(),
                    event_types: event_types.clone(),
                    actor: principal.actor(),
                },
                None,
            )
            .await?;
            config["url"] = json!(url);
            config["event_types"] = json!(event_types);
        } else if let Some(event_types) = body.0.event_types {
            config["event_types"] = json!(event_types);
        }
        let (position, org) = execute(
            &state,
            &principal,
            OrganizationCommand::ConfigureIntegration {
                provider: provider.clone(),
                config,
                actor: principal.actor(),
            },
            None,
        )
        .await?;
        Ok(Json(IntegrationWritten {
            data: view(&org, &provider)?,
            position,
        }))
    }

    /// Disconnect an integration (its webhook endpoint is removed).
    #[oai(
        path = "/integrations/:provider",
        method = "delete",
        operation_id = "disconnect_integration"
    )]
    async fn disconnect_integration(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The integration.
        provider: Path<String>,
    ) -> Result<DisconnectResponse, ApiError> {
        let (principal, org) = begin(&state, req, &auth).await?;
        super::require_manage(&principal)?;
        let provider = provider.0;
        kind(&provider)?;
        let (mut position, _) = execute(
            &state,
            &principal,
            OrganizationCommand::DisconnectIntegration {
                provider: provider.clone(),
                actor: principal.actor(),
            },
            None,
        )
        .await?;
        oauth::delete_tokens(&state.store, &principal.org(), &provider).await?;
        let endpoint = endpoint_id(&provider);
        if org.webhook_endpoints.contains_key(&endpoint) {
            position = execute(
                &state,
                &principal,
                OrganizationCommand::RemoveWebhookEndpoint {
                    endpoint_id: endpoint,
                    actor: principal.actor(),
                },
                None,
            )
            .await?
            .0;
        }
        Ok(DisconnectResponse::Disconnected(position))
    }

    /// Test an integration: a webhook integration gets a signed test delivery; an OAuth
    /// integration (`google_calendar`, `hubspot`) makes a harmless read with its stored token
    /// (the calendar list, the account details). Reports the answer.
    #[oai(
        path = "/integrations/:provider/test",
        method = "post",
        operation_id = "test_integration"
    )]
    async fn test_integration(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The integration.
        provider: Path<String>,
    ) -> Result<Json<IntegrationTest>, ApiError> {
        let (principal, org) = begin(&state, req, &auth).await?;
        super::require_manage(&principal)?;
        let provider = provider.0;
        if kind(&provider)? == "oauth" {
            return oauth_test(&state, &principal.org(), &org, &provider).await;
        }
        let details = org
            .webhook_endpoint_details
            .get(&endpoint_id(&provider))
            .filter(|_| org.integrations.get(&provider).copied().unwrap_or(false))
            .ok_or_else(|| {
                ApiError::not_found("integration_not_found", "the integration is not connected")
            })?;
        let body = json!({
            "type": "integration.test",
            "organization_id": principal.org(),
            "provider": provider,
            "sent_at": chrono::Utc::now().to_rfc3339(),
            "data": { "message": "This is a test delivery from CallFlex." },
        })
        .to_string();
        let secret = state
            .secrets
            .open(&details.secret)
            .map_err(ApiError::internal)?;
        let signature = signature(&secret, body.as_bytes());
        // Checked again: the policy may have tightened since the URL was saved. The client
        // checks every address it connects to and follows no redirect.
        target_url(&state, Some(&details.url))?;
        let client = state
            .config
            .egress
            .client(std::time::Duration::from_secs(10))
            .map_err(ApiError::internal)?;
        let sent = client
            .post(&details.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, &signature)
            .body(body)
            .send()
            .await;
        Ok(Json(match sent {
            Ok(res) => IntegrationTest {
                delivered: res.status().is_success(),
                status: Some(res.status().as_u16()),
                error: None,
                signature: Some(signature),
                sandbox: None,
            },
            Err(e) => IntegrationTest {
                delivered: false,
                status: None,
                error: Some(crate::providers::error_chain(&e)),
                signature: Some(signature),
                sandbox: None,
            },
        }))
    }
}

/// `POST /integrations/{oauth provider}/test`: a read with the stored token.
async fn oauth_test(
    state: &AppState,
    org_id: &str,
    org: &aggregates::organization::Organization,
    provider: &str,
) -> Result<Json<IntegrationTest>, ApiError> {
    let not_connected =
        || ApiError::not_found("integration_not_found", "the integration is not connected");
    if !org.integrations.get(provider).copied().unwrap_or(false) {
        return Err(not_connected());
    }
    let credentials = crate::providers::oauth::credentials(&state.store, org_id, provider)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(not_connected)?;
    let (name, config): (&'static str, _) = match provider {
        "google_calendar" => ("google_calendar", &state.config.google),
        _ => ("hubspot", &state.config.hubspot),
    };
    let probe =
        crate::providers::oauth::probe(name, config, credentials, state.store.clone(), org_id)
            .await;
    Ok(Json(IntegrationTest {
        delivered: probe.ok,
        status: probe.status,
        error: probe.error,
        signature: None,
        sandbox: Some(probe.sandbox),
    }))
}
