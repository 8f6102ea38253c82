//! `GET/POST /api/v1/organizations/{id}/api-keys`, `DELETE .../api-keys/{key_id}`.
//!
//! Organization API keys for server-to-server use (`Authorization: Bearer cfx_…`). The secret
//! is returned once, by `POST`, and only its SHA-256 is stored. Scopes: `read` (queries) and
//! `write` (also the commands a member may issue). Managing keys needs an admin or owner
//! (signed in as a user: a key cannot mint keys). A revoked key stops working immediately.

use std::sync::Arc;

use aggregates::organization::{ApiKeyScope, OrganizationCommand, Role};
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use sqlx::Row;
use uuid::Uuid;

use super::organizations::{execute, for_path};
use super::settle;
use crate::auth::{new_api_key_secret, token_hash};
use crate::http::error::ApiError;
use crate::http::query::at;
use crate::http::query::principal::BearerAuth;
use crate::http::ApiTags;
use crate::state::AppState;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ScopeName {
    Read,
    Write,
}

impl From<ScopeName> for ApiKeyScope {
    fn from(s: ScopeName) -> Self {
        match s {
            ScopeName::Read => ApiKeyScope::Read,
            ScopeName::Write => ApiKeyScope::Write,
        }
    }
}

fn scope_name(s: &str) -> Option<ScopeName> {
    match s {
        "read" => Some(ScopeName::Read),
        "write" => Some(ScopeName::Write),
        _ => None,
    }
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub scopes: Vec<ScopeName>,
    pub created_at: DateTime<Utc>,
    pub revoked: bool,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ApiKeyList {
    pub data: Vec<ApiKeyView>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NewApiKey {
    pub name: String,
    /// Default `["read"]`.
    pub scopes: Option<Vec<ScopeName>>,
}

/// The new key. `secret` is shown only in this answer.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ApiKeyCreated {
    pub id: String,
    pub name: String,
    pub scopes: Vec<ScopeName>,
    pub secret: String,
    pub created_at: DateTime<Utc>,
    /// Log position written.
    pub position: i64,
}

#[derive(Debug, ApiResponse)]
pub enum CreateApiKeyResponse {
    /// Created.
    #[oai(status = 201)]
    Created(Json<ApiKeyCreated>),
}

#[derive(Debug, ApiResponse)]
pub enum RevokeApiKeyResponse {
    /// Revoked.
    #[oai(status = 204)]
    Revoked,
}

pub struct ApiKeysApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Organizations")]
impl ApiKeysApi {
    /// The organization's API keys, newest first (never their secrets). Admin or owner.
    #[oai(
        path = "/organizations/:id/api-keys",
        method = "get",
        operation_id = "list_api_keys"
    )]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        auth: BearerAuth,
        /// The organization id.
        id: Path<String>,
    ) -> Result<Json<ApiKeyList>, ApiError> {
        let principal = for_path(&state, &auth, &id.0).await?;
        principal.require_user_role(Role::Admin)?;
        let rows = sqlx::query(
            "SELECT id, name, scopes, created_at, revoked FROM api_keys \
             WHERE organization_id = $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(principal.org())
        .fetch_all(state.store.pool())
        .await?;
        let mut data = Vec::with_capacity(rows.len());
        for row in rows {
            let scopes: String = row.try_get("scopes")?;
            data.push(ApiKeyView {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                scopes: scopes.split(',').filter_map(scope_name).collect(),
                created_at: at(row.try_get("created_at")?),
                revoked: row.try_get::<i64, _>("revoked")? != 0,
            });
        }
        Ok(Json(ApiKeyList { data }))
    }

    /// Create an API key. The secret (`cfx_…`) is in this answer only. Admin or owner.
    #[oai(
        path = "/organizations/:id/api-keys",
        method = "post",
        operation_id = "create_api_key"
    )]
    async fn create(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: BearerAuth,
        /// The organization id.
        id: Path<String>,
        body: Json<NewApiKey>,
    ) -> Result<CreateApiKeyResponse, ApiError> {
        let principal = for_path(&state, &auth, &id.0).await?;
        principal.require_user_role(Role::Admin)?;
        let body = body.0;
        let mut scopes = body.scopes.unwrap_or_else(|| vec![ScopeName::Read]);
        scopes.sort_by_key(|s| *s == ScopeName::Write);
        scopes.dedup();
        let secret = new_api_key_secret();
        let key_id = Uuid::new_v4().to_string();
        let command = OrganizationCommand::CreateApiKey {
            key_id: key_id.clone(),
            name: body.name.clone(),
            key_hash: token_hash(&secret),
            scopes: scopes.iter().map(|s| (*s).into()).collect(),
            actor: principal.actor(),
        };
        let position = execute(&state, req, &principal, command).await?;
        settle(&state, position).await?;
        Ok(CreateApiKeyResponse::Created(Json(ApiKeyCreated {
            id: key_id,
            name: body.name.trim().to_string(),
            scopes,
            secret,
            created_at: Utc::now(),
            position,
        })))
    }

    /// Revoke an API key; it stops working immediately. Admin or owner.
    #[oai(
        path = "/organizations/:id/api-keys/:key_id",
        method = "delete",
        operation_id = "revoke_api_key"
    )]
    async fn revoke(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: BearerAuth,
        /// The organization id.
        id: Path<String>,
        /// The key id.
        key_id: Path<String>,
    ) -> Result<RevokeApiKeyResponse, ApiError> {
        let principal = for_path(&state, &auth, &id.0).await?;
        principal.require_user_role(Role::Admin)?;
        let command = OrganizationCommand::RevokeApiKey {
            key_id: key_id.0,
            actor: principal.actor(),
        };
        let position = execute(&state, req, &principal, command).await?;
        settle(&state, position).await?;
        Ok(RevokeApiKeyResponse::Revoked)
    }
}
