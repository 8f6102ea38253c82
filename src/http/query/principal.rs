//! Who a `/api/v1` request acts for. This is the ONE place that knows where the organization
//! comes from: today the `X-Organization-Id` header (until the accounts issue lands); later an
//! authenticated principal (session or API key). Handlers only ever see [`Principal`].

use poem_openapi::auth::ApiKey;
use poem_openapi::SecurityScheme;
use uuid::Uuid;

use crate::http::error::ApiError;
use crate::state::AppState;

/// The organization a request acts for, sent in the `X-Organization-Id` header (a UUID).
/// Interim scheme until accounts and API keys land.
#[derive(SecurityScheme)]
#[oai(ty = "api_key", key_name = "X-Organization-Id", key_in = "header")]
pub struct OrganizationHeader(ApiKey);

/// The caller of a `/api/v1` request, scoped to exactly one live organization.
#[derive(Debug, Clone)]
pub struct Principal {
    pub organization_id: Uuid,
}

impl Principal {
    /// The `actor` recorded on commands this principal issues.
    pub fn actor(&self) -> String {
        // Trusted until the accounts issue gives requests a real user or API key.
        "system:dashboard-api".to_string()
    }

    /// The organization id as stored in read models.
    pub fn org(&self) -> String {
        self.organization_id.to_string()
    }
}

/// Resolves the principal: 401 when the credential is missing or malformed, 404 when the
/// organization does not exist (or was deleted).
pub async fn principal(
    state: &AppState,
    credential: &OrganizationHeader,
) -> Result<Principal, ApiError> {
    let raw = credential.0.key.trim();
    let organization_id = Uuid::parse_str(raw).map_err(|_| {
        ApiError::unauthorized(
            "invalid_organization",
            "X-Organization-Id must be an organization id (UUID)",
        )
    })?;
    let (organization, _) = state
        .organizations
        .load(&organization_id.to_string())
        .await?;
    if !organization.is_live() {
        return Err(ApiError::not_found(
            "organization_not_found",
            "the organization does not exist",
        ));
    }
    Ok(Principal { organization_id })
}
