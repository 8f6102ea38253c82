//! `GET/POST /api/v1/organizations`, `GET/PATCH/DELETE /api/v1/organizations/{id}`.
//!
//! Reads of one organization come from its aggregate (strongly consistent); the list comes
//! from the `accounts` read model. Changing the profile or settings needs admin; deleting the
//! organization needs owner. An organization the caller does not belong to answers 404.

use std::sync::Arc;

use aggregates::organization::{
    NotificationSettings, Organization, OrganizationCommand, OrganizationSettings, QuietHours,
    Role, TransferNumbers,
};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sqlx::Row;
use uuid::Uuid;

use super::auth::parse_role;
use super::{organization_id, settle, RoleName};
use crate::http::error::ApiError;
use crate::http::query::principal::{authenticate, principal_for, BearerAuth, Identity, Principal};
use crate::http::query::Lenient;
use crate::http::ApiTags;
use crate::state::AppState;

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Notifications {
    pub sms_enabled: bool,
    pub sms_numbers: Vec<String>,
    pub email_enabled: bool,
    pub email_addresses: Vec<String>,
    /// Send a summary of every processed call on the enabled channels (default true).
    pub post_call_summary: Option<bool>,
    /// Post-call summaries wait for the end of these hours, in the organization's `timezone`
    /// (UTC without one); urgent messages and driver call-outs are sent at once.
    pub quiet_hours: Option<QuietHoursView>,
    /// Usage alerts (80% and 100% of the plan's minutes) also go by SMS to `sms_numbers`
    /// (default false; they always go by email to the owners and admins).
    pub usage_alerts_sms: Option<bool>,
}

/// Local times `HH:MM`; a `start` after `end` spans midnight (`22:00` to `07:00`).
#[derive(Debug, Clone, Object)]
pub struct QuietHoursView {
    #[oai(validator(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: String,
    #[oai(validator(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub end: String,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Transfers {
    pub dispatch: Option<String>,
    pub manager: Option<String>,
    pub emergency: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Settings {
    pub notifications: Notifications,
    pub transfer_numbers: Transfers,
    /// Free-form business hours (e.g. `{"mon": ["09:00", "17:00"]}`).
    pub business_hours: Option<serde_json::Value>,
    /// IANA time zone, e.g. `America/Denver`.
    pub timezone: Option<String>,
}

/// Absent fields stay unchanged; a present group replaces that group.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SettingsChanges {
    pub notifications: Option<Notifications>,
    pub transfer_numbers: Option<Transfers>,
    pub business_hours: Option<serde_json::Value>,
    pub timezone: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct OrganizationView {
    pub id: String,
    pub name: String,
    pub settings: Settings,
    /// The caller's role in it.
    pub role: RoleName,
    /// Present when `as_of` or `as_of_position` was asked: the organization as it stood then.
    pub as_of: Option<crate::http::as_of::AsOf>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct OrganizationWritten {
    pub data: OrganizationView,
    /// Log position written.
    pub position: i64,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct OrganizationSummary {
    pub id: String,
    pub name: String,
    pub role: RoleName,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct OrganizationList {
    pub data: Vec<OrganizationSummary>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NewOrganization {
    #[oai(validator(min_length = 1, max_length = 200, pattern = r"\S"))]
    pub name: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct OrganizationChanges {
    #[oai(validator(min_length = 1, max_length = 200, pattern = r"\S"))]
    pub name: Option<String>,
    pub settings: Option<SettingsChanges>,
}

#[derive(Debug, ApiResponse)]
pub enum CreateOrganizationResponse {
    /// Created; the caller is its owner.
    #[oai(status = 201)]
    Created(Json<OrganizationWritten>),
}

#[derive(Debug, ApiResponse)]
pub enum DeleteOrganizationResponse {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

fn settings_view(s: &OrganizationSettings) -> Settings {
    Settings {
        notifications: Notifications {
            sms_enabled: s.notifications.sms_enabled,
            sms_numbers: s.notifications.sms_numbers.clone(),
            email_enabled: s.notifications.email_enabled,
            email_addresses: s.notifications.email_addresses.clone(),
            post_call_summary: Some(s.notifications.post_call_summary),
            quiet_hours: s
                .notifications
                .quiet_hours
                .as_ref()
                .map(|q| QuietHoursView {
                    start: q.start.clone(),
                    end: q.end.clone(),
                }),
            usage_alerts_sms: Some(s.notifications.usage_alerts_sms),
        },
        transfer_numbers: Transfers {
            dispatch: s.transfer_numbers.dispatch.clone(),
            manager: s.transfer_numbers.manager.clone(),
            emergency: s.transfer_numbers.emergency.clone(),
        },
        business_hours: s.business_hours.clone(),
        timezone: s.timezone.clone(),
    }
}

fn view(id: Uuid, organization: &Organization, role: Role) -> OrganizationView {
    OrganizationView {
        id: id.to_string(),
        name: organization.name.clone(),
        settings: settings_view(&organization.settings),
        role: role.into(),
        as_of: None,
    }
}

fn apply_changes(
    mut settings: OrganizationSettings,
    changes: SettingsChanges,
) -> Result<OrganizationSettings, ApiError> {
    if let Some(n) = changes.notifications {
        settings.notifications = NotificationSettings {
            sms_enabled: n.sms_enabled,
            sms_numbers: n.sms_numbers,
            email_enabled: n.email_enabled,
            email_addresses: n.email_addresses,
            post_call_summary: n.post_call_summary.unwrap_or(true),
            quiet_hours: n.quiet_hours.map(|q| QuietHours {
                start: q.start,
                end: q.end,
            }),
            usage_alerts_sms: n.usage_alerts_sms.unwrap_or(false),
        };
    }
    if let Some(t) = changes.transfer_numbers {
        settings.transfer_numbers = TransferNumbers {
            dispatch: t.dispatch,
            manager: t.manager,
            emergency: t.emergency,
        };
    }
    if let Some(hours) = changes.business_hours {
        if !hours.is_object() && !hours.is_null() {
            return Err(ApiError::unprocessable(
                "invalid_input",
                "business_hours must be an object",
            ));
        }
        settings.business_hours = (!hours.is_null()).then_some(hours);
    }
    if let Some(tz) = changes.timezone {
        let tz = tz.trim().to_string();
        if tz.parse::<chrono_tz::Tz>().is_err() {
            return Err(ApiError::unprocessable(
                "invalid_timezone",
                format!("`{tz}` is not an IANA time zone"),
            ));
        }
        settings.timezone = Some(tz);
    }
    Ok(settings)
}

/// The principal for the organization in the path (404 for outsiders).
pub async fn for_path(
    state: &AppState,
    auth: &BearerAuth,
    raw_id: &str,
) -> Result<Principal, ApiError> {
    let identity = authenticate(state, &auth.0).await?;
    principal_for(state, identity, organization_id(raw_id)?).await
}

pub async fn execute(
    state: &AppState,
    req: &Request,
    principal: &Principal,
    command: OrganizationCommand,
) -> Result<i64, ApiError> {
    let key = crate::http::idempotency_key(req);
    let done = crate::app::organizations::execute_as(
        state,
        &principal.caller(),
        "organizations",
        key.as_deref(),
        command,
    )
    .await?;
    Ok(done.result.last_position)
}

fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim().to_string();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::unprocessable(
            "invalid_input",
            "name must have 1 to 200 characters",
        ));
    }
    Ok(name)
}

pub struct OrganizationsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Organizations")]
impl OrganizationsApi {
    /// The organizations the caller is an active member of (an API key: its organization).
    #[oai(
        path = "/organizations",
        method = "get",
        operation_id = "list_organizations"
    )]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        auth: BearerAuth,
    ) -> Result<Json<OrganizationList>, ApiError> {
        let identity = authenticate(&state, &auth.0).await?;
        let data = match &identity {
            Identity::ApiKey {
                organization_id, ..
            } => {
                let principal = principal_for(&state, identity.clone(), *organization_id).await?;
                let (organization, _) = state.organizations.load(&principal.org()).await?;
                vec![OrganizationSummary {
                    id: principal.org(),
                    name: organization.name,
                    role: principal.role.into(),
                }]
            }
            Identity::User { user_id, .. } => {
                let rows = sqlx::query(
                    "SELECT o.id, o.name, m.role FROM memberships m JOIN organizations_list o \
                     ON o.id = m.organization_id WHERE m.user_id = $1 AND m.status = 'active' \
                     AND o.deleted = 0 ORDER BY o.name, o.id",
                )
                .bind(user_id.clone())
                .fetch_all(state.store.pool())
                .await?;
                let mut data = Vec::with_capacity(rows.len());
                for row in rows {
                    let role: String = row.try_get("role")?;
                    data.push(OrganizationSummary {
                        id: row.try_get("id")?,
                        name: row.try_get("name")?,
                        role: parse_role(&role).into(),
                    });
                }
                data
            }
        };
        Ok(Json(OrganizationList { data }))
    }

    /// Create an organization; the signed-in user becomes its owner.
    #[oai(
        path = "/organizations",
        method = "post",
        operation_id = "create_organization"
    )]
    async fn create(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: BearerAuth,
        body: Json<NewOrganization>,
    ) -> Result<CreateOrganizationResponse, ApiError> {
        let identity = authenticate(&state, &auth.0).await?;
        let user_id = identity.user_id()?.to_string();
        let name = check_name(&body.0.name)?;
        let (user, _) = state.users.load(&user_id).await?;
        let id = Uuid::new_v4();
        let actor = identity.actor();
        let key = crate::http::idempotency_key(req);
        let done = crate::app::organizations::execute_as(
            &state,
            &crate::app::Caller::new(actor.clone(), id),
            "organizations",
            key.as_deref(),
            OrganizationCommand::Create {
                id,
                name,
                owner_user_id: user_id,
                owner_email: user.email,
                actor: actor.clone(),
            },
        )
        .await?;
        let position = done.result.last_position;
        settle(&state, position).await?;
        Ok(CreateOrganizationResponse::Created(Json(
            OrganizationWritten {
                data: view(id, &done.state, Role::Owner),
                position,
            },
        )))
    }

    /// One organization: name, settings and the caller's role.
    #[oai(
        path = "/organizations/:id",
        method = "get",
        operation_id = "get_organization"
    )]
    async fn get(
        &self,
        state: Data<&Arc<AppState>>,
        auth: BearerAuth,
        /// The organization id.
        id: Path<String>,
        /// The organization as of this time (RFC 3339): its events recorded up to then.
        as_of: Query<Option<Lenient<chrono::DateTime<chrono::Utc>>>>,
        /// The organization as of this log position.
        as_of_position: Query<Option<Lenient<i64>>>,
    ) -> Result<Json<OrganizationView>, ApiError> {
        let principal = for_path(&state, &auth, &id.0).await?;
        let Some(asked) = crate::http::as_of::asked(as_of, as_of_position)? else {
            let (organization, _) = state.organizations.load(&principal.org()).await?;
            return Ok(Json(view(
                principal.organization_id,
                &organization,
                principal.role,
            )));
        };
        let events = crate::app::audit::historical::events_until(
            &state,
            "organization",
            &principal.org(),
            asked.until,
        )
        .await?;
        let last = events.last().map_or(0, |(e, _)| e.position);
        let folded = events.into_iter().filter_map(|(_, e)| match e {
            projections::DomainEvent::Organization(o) => Some(o),
            _ => None,
        });
        let then = aggregates::replay::<Organization>(folded);
        if then.name.is_empty() && last == 0 {
            return Err(ApiError::not_found(
                "organization_not_found",
                "the organization did not exist at that point",
            ));
        }
        let mut answer = view(principal.organization_id, &then, principal.role);
        answer.as_of = Some(asked.mark(last));
        Ok(Json(answer))
    }

    /// Change the name and settings (notifications, transfer numbers, business hours, time
    /// zone). Admin or owner.
    #[oai(
        path = "/organizations/:id",
        method = "patch",
        operation_id = "update_organization"
    )]
    async fn update(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: BearerAuth,
        /// The organization id.
        id: Path<String>,
        body: Json<OrganizationChanges>,
    ) -> Result<Json<OrganizationWritten>, ApiError> {
        let principal = for_path(&state, &auth, &id.0).await?;
        principal.require_user_role(Role::Admin)?;
        let changes = body.0;
        let name = changes.name.as_deref().map(check_name).transpose()?;
        let (organization, _) = state.organizations.load(&principal.org()).await?;
        let settings = changes
            .settings
            .map(|s| apply_changes(organization.settings.clone(), s))
            .transpose()?;
        let mut position = 0;
        if name.is_some() {
            let command = OrganizationCommand::UpdateProfile {
                name,
                actor: principal.actor(),
            };
            position = execute(&state, req, &principal, command).await?;
        }
        if let Some(settings) = settings {
            let command = OrganizationCommand::UpdateSettings {
                settings,
                actor: principal.actor(),
            };
            position = position.max(execute(&state, req, &principal, command).await?);
        }
        settle(&state, position).await?;
        let (organization, _) = state.organizations.load(&principal.org()).await?;
        Ok(Json(OrganizationWritten {
            data: view(principal.organization_id, &organization, principal.role),
            position,
        }))
    }

    /// Delete the organization. Owner only; its API keys stop working.
    #[oai(
        path = "/organizations/:id",
        method = "delete",
        operation_id = "delete_organization"
    )]
    async fn delete(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: BearerAuth,
        /// The organization id.
        id: Path<String>,
    ) -> Result<DeleteOrganizationResponse, ApiError> {
        let principal = for_path(&state, &auth, &id.0).await?;
        principal.require_user_role(Role::Owner)?;
        let command = OrganizationCommand::Delete {
            actor: principal.actor(),
        };
        let position = execute(&state, req, &principal, command).await?;
        settle(&state, position).await?;
        Ok(DeleteOrganizationResponse::Deleted)
    }
}
