//! OAuth 2.0 authorization-code exchange for the `google_calendar` and `hubspot`
//! integrations, and the table their tokens are kept in.
//!
//! The exchange is a form `POST` to the provider's token URL (`grant_type`, `code`,
//! `redirect_uri`, `client_id`, `client_secret`). In `outbound_requests` the code and the
//! client secret are recorded as `***`, and so is every string of the answer (the tokens).
//! Tokens are kept in `integration_credentials`, not in the event log: they are secrets that
//! must be replaceable and erasable, which an append-only log cannot offer. They come back
//! as [`Secret`]s, which never print.

use eventlog::{now_ms, EventStore};
use serde_json::Value;
use sqlx::Row;

use super::{Auth, Body, HttpClient, ProviderError, Request};
use crate::config::{OAuthConfig, Secret};

/// What the provider granted.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSet {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub token_type: Option<String>,
    pub scope: Option<String>,
    /// Epoch milliseconds, when the provider says how long the access token lives.
    pub expires_at_ms: Option<i64>,
    /// True when nothing was sent (no client credentials) and the tokens are fake.
    pub sandbox: bool,
}

pub struct OAuthClient {
    client: HttpClient,
    client_id: String,
    client_secret: Option<Secret>,
}

impl OAuthClient {
    /// `provider` names the integration in `outbound_requests`.
    pub fn new(provider: &'static str, config: &OAuthConfig, store: EventStore) -> Self {
        Self {
            client: HttpClient::new(provider, config.provider(), Auth::None, store),
            client_id: config
                .client_id
                .clone()
                .unwrap_or_else(|| "callflex-sandbox".into()),
            client_secret: config.client_secret.clone(),
        }
    }

    pub fn sandbox(&self) -> bool {
        self.client.sandbox()
    }

    /// Exchanges an authorization `code` (the redirect URI must be the one the authorization
    /// URL named). A refusal is [`ProviderError::Rejected`], an unreachable token endpoint
    /// [`ProviderError::Unavailable`].
    pub async fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        org: &str,
    ) -> Result<TokenSet, ProviderError> {
        let secret = self
            .client_secret
            .as_ref()
            .map(|s| s.expose().to_string())
            .unwrap_or_default();
        let form = |code: &str, secret: &str| {
            Body::Form(vec![
                ("grant_type".into(), "authorization_code".into()),
                ("code".into(), code.to_string()),
                ("redirect_uri".into(), redirect_uri.to_string()),
                ("client_id".into(), self.client_id.clone()),
                ("client_secret".into(), secret.to_string()),
            ])
        };
        let request = Request {
            method: reqwest::Method::POST,
            path: String::new(),
            body: form(code, &secret),
            idempotency_key: None,
            organization_id: Some(org.to_string()),
        };
        let answer = self
            .client
            .send_confidential(request, form("***", "***"))
            .await?;
        let Some(answer) = answer else {
            let fake = uuid::Uuid::new_v4().simple().to_string();
            return Ok(TokenSet {
                access_token: Secret::new(format!("sandbox-access-{fake}")),
                refresh_token: Some(Secret::new(format!("sandbox-refresh-{fake}"))),
                token_type: Some("Bearer".into()),
                scope: None,
                expires_at_ms: Some(now_ms() + 3_600_000),
                sandbox: true,
            });
        };
        let text = |key: &str| answer.body[key].as_str().map(str::to_string);
        let access_token = text("access_token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ProviderError::Rejected {
                provider: self.client.provider(),
                status: answer.status,
                body: "answer without an access_token".into(),
            })?;
        Ok(TokenSet {
            access_token: Secret::new(access_token),
            refresh_token: text("refresh_token").map(Secret::new),
            token_type: text("token_type"),
            scope: text("scope"),
            expires_at_ms: answer.body["expires_in"]
                .as_i64()
                .map(|secs| now_ms() + secs * 1000),
            sandbox: false,
        })
    }
}

/// The non-secret facts about a token set, for the integration's recorded configuration.
pub fn describe(tokens: &TokenSet) -> Value {
    serde_json::json!({
        "auth": "oauth",
        "token_type": tokens.token_type,
        "scope": tokens.scope,
        "expires_at_ms": tokens.expires_at_ms,
        "has_refresh_token": tokens.refresh_token.is_some(),
        "sandbox": tokens.sandbox,
    })
}

/// Stores (or replaces) an organization's tokens for `provider`.
pub async fn store_tokens(
    store: &EventStore,
    org: &str,
    provider: &str,
    tokens: &TokenSet,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO integration_credentials (organization_id, provider, access_token, \
         refresh_token, token_type, scope, expires_at, sandbox, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (organization_id, provider) DO UPDATE SET \
         access_token = excluded.access_token, refresh_token = excluded.refresh_token, \
         token_type = excluded.token_type, scope = excluded.scope, \
         expires_at = excluded.expires_at, sandbox = excluded.sandbox, \
         updated_at = excluded.updated_at",
    )
    .bind(org.to_string())
    .bind(provider.to_string())
    .bind(tokens.access_token.expose().to_string())
    .bind(
        tokens
            .refresh_token
            .as_ref()
            .map(|t| t.expose().to_string()),
    )
    .bind(tokens.token_type.clone())
    .bind(tokens.scope.clone())
    .bind(tokens.expires_at_ms)
    .bind(i64::from(tokens.sandbox))
    .bind(now_ms())
    .execute(store.write_pool())
    .await?;
    Ok(())
}

/// The access token of an organization's integration, if it has one.
pub async fn access_token(
    store: &EventStore,
    org: &str,
    provider: &str,
) -> Result<Option<Secret>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT access_token FROM integration_credentials \
         WHERE organization_id = $1 AND provider = $2",
    )
    .bind(org.to_string())
    .bind(provider.to_string())
    .fetch_optional(store.pool())
    .await?;
    row.map(|r| r.try_get::<String, _>(0).map(Secret::new))
        .transpose()
}

/// The access token of an organization's integration and whether it is a sandbox token.
pub async fn credentials(
    store: &EventStore,
    org: &str,
    provider: &str,
) -> Result<Option<(Secret, bool)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT access_token, sandbox FROM integration_credentials \
         WHERE organization_id = $1 AND provider = $2",
    )
    .bind(org.to_string())
    .bind(provider.to_string())
    .fetch_optional(store.pool())
    .await?;
    row.map(|r| {
        let sandbox: i64 = r.try_get(1)?;
        Ok((Secret::new(r.try_get::<String, _>(0)?), sandbox != 0))
    })
    .transpose()
}

/// What a test read with the stored token found.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The provider answered 2xx (or, for a sandbox token, the read was recorded).
    pub ok: bool,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// Nothing was sent: the token is a sandbox one.
    pub sandbox: bool,
}

/// A harmless read with the stored token: Google Calendar's calendar list (one entry),
/// HubSpot's account details. The answer is recorded in `outbound_requests` with every
/// string masked.
pub async fn probe(
    provider: &'static str,
    config: &OAuthConfig,
    (token, sandbox_token): (Secret, bool),
    store: EventStore,
    org: &str,
) -> Probe {
    let path = match provider {
        "google_calendar" => "/calendar/v3/users/me/calendarList?maxResults=1",
        _ => "/account-info/v3/details",
    };
    let api = crate::config::ProviderConfig {
        base_url: config.api_url.clone(),
        api_key: (!sandbox_token).then(|| token.clone()),
    };
    let client = HttpClient::new(
        provider,
        api,
        Auth::Bearer(token.expose().to_string()),
        store,
    )
    .with_attempts(1);
    let request = Request {
        method: reqwest::Method::GET,
        path: path.into(),
        body: Body::Empty,
        idempotency_key: None,
        organization_id: Some(org.to_string()),
    };
    let failed = |status, error: String| Probe {
        ok: false,
        status,
        error: Some(error),
        sandbox: false,
    };
    match client.send_confidential(request, Body::Empty).await {
        Ok(None) => Probe {
            ok: true,
            status: None,
            error: None,
            sandbox: true,
        },
        Ok(Some(answer)) => Probe {
            ok: true,
            status: Some(answer.status),
            error: None,
            sandbox: false,
        },
        Err(ProviderError::Rejected { status, .. }) if matches!(status, 401 | 403) => failed(
            Some(status),
            format!("{provider} refused the stored token ({status}): reconnect the integration"),
        ),
        Err(ProviderError::Rejected { status, body, .. }) => failed(
            Some(status),
            format!(
                "{provider} answered {status}: {}",
                body.chars().take(200).collect::<String>()
            ),
        ),
        Err(err) => failed(None, err.to_string()),
    }
}

/// Forgets an organization's tokens for `provider` (on disconnect).
pub async fn delete_tokens(
    store: &EventStore,
    org: &str,
    provider: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM integration_credentials WHERE organization_id = $1 AND provider = $2")
        .bind(org.to_string())
        .bind(provider.to_string())
        .execute(store.write_pool())
        .await?;
    Ok(())
}
