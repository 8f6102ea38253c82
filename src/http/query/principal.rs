//! Who a `/api/v1` request acts for. This is the ONE place that turns a request's credential
//! into a [`Principal`]: an authenticated caller (a user's session or an organization API
//! key), the one organization the request acts for, and the caller's role there.
//!
//! - `Authorization: Bearer <session token>` (from sign-up / sign-in) or
//!   `Authorization: Bearer cfx_…` (an organization API key).
//! - `X-Organization-Id` selects the organization; optional when the user belongs to exactly
//!   one, and implied by an API key.
//!
//! Lookups start in the `accounts` read model (token hash → session / key), but a request is
//! admitted only after the User / Organization aggregate confirms the session or key is still
//! live, so a sign-out, password reset or key revocation takes effect immediately, whatever the
//! projection lag. An organization the caller does not belong to answers 404, as one that does
//! not exist.

use aggregates::organization::{ApiKeyScope, Role};
use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::SecurityScheme;
use sqlx::Row;
use uuid::Uuid;

use crate::auth::{token_hash, API_KEY_PREFIX};
use crate::http::error::ApiError;
use crate::state::AppState;

/// A session token (`POST /api/v1/auth/signin`) or an organization API key (`cfx_…`), as
/// `Authorization: Bearer <token>`. Send `X-Organization-Id: <uuid>` to choose the
/// organization when the user belongs to several (an API key implies its organization).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "opaque", checker = "credential")]
pub struct BearerAuth(pub Credential);

/// The name the query API has always used for its credential.
pub type OrganizationHeader = BearerAuth;

/// What the request carries: the bearer token and the `X-Organization-Id` header, if any.
#[derive(Debug, Clone)]
pub struct Credential {
    pub token: String,
    pub organization: Option<String>,
}

async fn credential(req: &Request, bearer: Bearer) -> Option<Credential> {
    Some(Credential {
        token: bearer.token.trim().to_string(),
        organization: req
            .header("x-organization-id")
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty()),
    })
}

/// An authenticated caller, before an organization is chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    User {
        user_id: String,
        session_id: String,
    },
    ApiKey {
        key_id: String,
        organization_id: Uuid,
        scopes: Vec<ApiKeyScope>,
    },
}

impl Identity {
    /// The `actor` recorded on commands: `user:<id>` or `api_key:<id>`.
    pub fn actor(&self) -> String {
        match self {
            Identity::User { user_id, .. } => format!("user:{user_id}"),
            Identity::ApiKey { key_id, .. } => format!("api_key:{key_id}"),
        }
    }

    /// The user id; 403 `user_required` for an API key.
    pub fn user_id(&self) -> Result<&str, ApiError> {
        match self {
            Identity::User { user_id, .. } => Ok(user_id),
            Identity::ApiKey { .. } => Err(ApiError::forbidden(
                "user_required",
                "this operation needs a signed-in user, not an API key",
            )),
        }
    }
}

/// The caller of a `/api/v1` request, scoped to exactly one live organization.
#[derive(Debug, Clone)]
pub struct Principal {
    pub organization_id: Uuid,
    pub identity: Identity,
    /// The member's role; for an API key, `member` with the write scope and `viewer` without.
    pub role: Role,
}

/// Owner 3, admin 2, member 1, viewer 0.
pub fn rank(role: Role) -> u8 {
    match role {
        Role::Owner => 3,
        Role::Admin => 2,
        Role::Member => 1,
        Role::Viewer | Role::Auditor => 0,
    }
}

impl Principal {
    /// The `actor` recorded on commands this principal issues.
    pub fn actor(&self) -> String {
        self.identity.actor()
    }

    /// The principal as the application layer's caller.
    pub fn caller(&self) -> crate::app::Caller {
        crate::app::Caller::new(self.actor(), self.organization_id)
    }

    /// The organization id as stored in read models.
    pub fn org(&self) -> String {
        self.organization_id.to_string()
    }

    /// True for members above viewer and write-scoped API keys.
    pub fn can_write(&self) -> bool {
        rank(self.role) >= rank(Role::Member)
    }

    /// 403 `forbidden` unless the principal may write (commands of the query API).
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.can_write() {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "forbidden",
                "this operation needs a role above viewer (or an API key with the write scope)",
            ))
        }
    }

    /// 403 unless the caller is a user with at least `role`.
    /// What this principal may see of the audit trail: owners and admins everything but
    /// secrets, the auditor role personal data masked too; anyone else (and API keys) 403.
    pub fn audit_view(&self) -> Result<crate::app::audit::View, ApiError> {
        self.identity.user_id()?;
        match self.role {
            Role::Owner | Role::Admin => Ok(crate::app::audit::View::Full),
            Role::Auditor => Ok(crate::app::audit::View::PersonalDataMasked),
            Role::Member | Role::Viewer => Err(ApiError::forbidden(
                "forbidden",
                "the audit trail needs the owner, admin or auditor role",
            )),
        }
    }

    pub fn require_user_role(&self, role: Role) -> Result<&str, ApiError> {
        let user_id = self.identity.user_id()?;
        if rank(self.role) >= rank(role) {
            Ok(user_id)
        } else {
            Err(ApiError::forbidden(
                "forbidden",
                format!("this operation needs the {role:?} role or higher").to_lowercase(),
            ))
        }
    }
}

fn invalid_token() -> ApiError {
    ApiError::unauthorized(
        "invalid_token",
        "the bearer token is invalid, expired or revoked",
    )
}

fn organization_not_found() -> ApiError {
    ApiError::not_found("organization_not_found", "the organization does not exist")
}

/// Authenticates the bearer token: 401 `invalid_token` unless it is a live session or a live
/// API key (checked against the aggregate, not only the read model).
pub async fn authenticate(state: &AppState, credential: &Credential) -> Result<Identity, ApiError> {
    let token = credential.token.as_str();
    if token.is_empty() || token.len() > 512 {
        return Err(invalid_token());
    }
    let hash = token_hash(token);
    if token.starts_with(API_KEY_PREFIX) {
        let row = sqlx::query(
            "SELECT id, organization_id FROM api_keys WHERE key_hash = $1 AND revoked = 0",
        )
        .bind(hash.clone())
        .fetch_optional(state.store.pool())
        .await?
        .ok_or_else(invalid_token)?;
        let key_id: String = row.try_get("id")?;
        let org: String = row.try_get("organization_id")?;
        let organization_id = Uuid::parse_str(&org).map_err(|_| invalid_token())?;
        let (organization, _) = state.organizations.load(&org).await?;
        let key = organization
            .live_api_key(&key_id)
            .filter(|k| k.key_hash == hash && organization.is_live())
            .ok_or_else(invalid_token)?;
        return Ok(Identity::ApiKey {
            key_id,
            organization_id,
            scopes: key.scopes.clone(),
        });
    }
    let row = sqlx::query(
        "SELECT session_id, user_id FROM sessions WHERE token_hash = $1 AND revoked = 0",
    )
    .bind(hash.clone())
    .fetch_optional(state.store.pool())
    .await?
    .ok_or_else(invalid_token)?;
    let session_id: String = row.try_get("session_id")?;
    let user_id: String = row.try_get("user_id")?;
    let (user, _) = state.users.load(&user_id).await?;
    if !user.session_is_live(&session_id, &hash, chrono::Utc::now()) {
        return Err(invalid_token());
    }
    Ok(Identity::User {
        user_id,
        session_id,
    })
}

/// The principal of `identity` in organization `organization_id`: 404 unless the organization
/// is live and the caller belongs to it (an active member, or the API key's organization).
pub async fn principal_for(
    state: &AppState,
    identity: Identity,
    organization_id: Uuid,
) -> Result<Principal, ApiError> {
    let (organization, _) = state
        .organizations
        .load(&organization_id.to_string())
        .await?;
    if !organization.is_live() {
        return Err(organization_not_found());
    }
    let role = match &identity {
        Identity::ApiKey {
            organization_id: own,
            scopes,
            ..
        } => {
            if *own != organization_id {
                return Err(organization_not_found());
            }
            if scopes.contains(&ApiKeyScope::Write) {
                Role::Member
            } else {
                Role::Viewer
            }
        }
        Identity::User { user_id, .. } => {
            organization
                .active_member(user_id)
                .ok_or_else(organization_not_found)?
                .role
        }
    };
    Ok(Principal {
        organization_id,
        identity,
        role,
    })
}

/// Resolves the principal: 401 when the credential is missing, invalid, expired or revoked
/// (or `X-Organization-Id` is not a UUID), 404 when the organization does not exist or the
/// caller does not belong to it, 400 `organization_required` when a user of several
/// organizations names none.
pub async fn principal(state: &AppState, auth: &BearerAuth) -> Result<Principal, ApiError> {
    let identity = authenticate(state, &auth.0).await?;
    let organization_id = match (&auth.0.organization, &identity) {
        (Some(raw), _) => Uuid::parse_str(raw).map_err(|_| {
            ApiError::unauthorized(
                "invalid_organization",
                "X-Organization-Id must be an organization id (UUID)",
            )
        })?,
        (
            None,
            Identity::ApiKey {
                organization_id, ..
            },
        ) => *organization_id,
        (None, Identity::User { user_id, .. }) => only_organization(state, user_id).await?,
    };
    principal_for(state, identity, organization_id).await
}

/// The one organization a user is an active member of (from the read model; the membership
/// is then confirmed by the aggregate in [`principal_for`]).
async fn only_organization(state: &AppState, user_id: &str) -> Result<Uuid, ApiError> {
    let rows = sqlx::query(
        "SELECT m.organization_id FROM memberships m JOIN organizations_list o \
         ON o.id = m.organization_id WHERE m.user_id = $1 AND m.status = 'active' \
         AND o.deleted = 0 ORDER BY m.organization_id LIMIT 2",
    )
    .bind(user_id.to_string())
    .fetch_all(state.store.pool())
    .await?;
    match rows.as_slice() {
        [only] => {
            let id: String = only.try_get("organization_id")?;
            Uuid::parse_str(&id).map_err(|_| organization_not_found())
        }
        [] => Err(ApiError::not_found(
            "organization_not_found",
            "you do not belong to any organization yet",
        )),
        _ => Err(ApiError::bad_request(
            "organization_required",
            "you belong to several organizations: choose one with X-Organization-Id",
        )),
    }
}
