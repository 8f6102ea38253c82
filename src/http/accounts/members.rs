//! `GET/POST /api/v1/organizations/{id}/members`, `POST .../members/accept`,
//! `PATCH/DELETE /api/v1/organizations/{id}/members/{uid}`.
//!
//! Inviting an address: if it has an account, the invitation names that user; otherwise the
//! address is *reserved* with a new user id (the `UserEmail` aggregate) and the invitation
//! names that id; signing up with the address later adopts it. Either way the invitee accepts
//! with `POST /organizations/{id}/members/accept` once signed in. The aggregate enforces the
//! roles (admin manages members, only an owner grants or takes away ownership) and that the
//! last owner can neither leave nor be demoted (409 `last_owner`).

use std::sync::Arc;

use aggregates::organization::{MemberStatus, OrganizationCommand, Role};
use aggregates::user::UserEmailCommand;
use poem::web::Data;
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::organizations::{execute, for_path};
use super::{email_address, organization_id, settle, user_error, RoleName, EMAIL_FROM};
use crate::http::error::ApiError;
use crate::http::query::principal::{authenticate, BearerAuth};
use crate::http::ApiTags;
use crate::providers::resend::{Email, Resend};
use crate::state::AppState;

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct MemberView {
    pub user_id: String,
    pub email: String,
    pub role: RoleName,
    /// `active` or `invited`.
    pub status: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct MemberList {
    pub data: Vec<MemberView>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct MemberWritten {
    pub data: MemberView,
    /// Log position written.
    pub position: i64,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Invitation {
    pub email: String,
    pub role: RoleName,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RoleChange {
    pub role: RoleName,
}

#[derive(Debug, ApiResponse)]
pub enum InviteResponse {
    /// Invited.
    #[oai(status = 201)]
    Created(Json<MemberWritten>),
}

#[derive(Debug, ApiResponse)]
pub enum RemoveResponse {
    /// Removed.
    #[oai(status = 204)]
    Removed,
}

fn status_name(status: MemberStatus) -> String {
    match status {
        MemberStatus::Active => "active",
        MemberStatus::Invited => "invited",
    }
    .to_string()
}

async fn member(state: &AppState, org: &str, user_id: &str) -> Result<MemberView, ApiError> {
    let (organization, _) = state.organizations.load(org).await?;
    let m = organization
        .members
        .get(user_id)
        .ok_or_else(|| ApiError::not_found("member_not_found", "member not found"))?;
    Ok(MemberView {
        user_id: user_id.to_string(),
        email: m.email.clone(),
        role: m.role.into(),
        status: status_name(m.status),
    })
}

pub struct MembersApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Organizations")]
impl MembersApi {
    /// Members and pending invitations.
    #[oai(
        path = "/organizations/:id/members",
        method = "get",
        operation_id = "list_members"
    )]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        auth: BearerAuth,
        /// The organization id.
        id: Path<String>,
    ) -> Result<Json<MemberList>, ApiError> {
        let principal = for_path(&state, &auth, &id.0).await?;
        let (organization, _) = state.organizations.load(&principal.org()).await?;
        let data = organization
            .members
            .iter()
            .map(|(user_id, m)| MemberView {
                user_id: user_id.clone(),
                email: m.email.clone(),
                role: m.role.into(),
                status: status_name(m.status),
            })
            .collect();
        Ok(Json(MemberList { data }))
    }

    /// Invite someone by email with a role (admin; inviting an owner needs owner).
    ///
    /// 409 `already_member` when the address belongs to an active member.
    #[oai(
        path = "/organizations/:id/members",
        method = "post",
        operation_id = "invite_member"
    )]
    async fn invite(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: BearerAuth,
        /// The organization id.
        id: Path<String>,
        body: Json<Invitation>,
    ) -> Result<InviteResponse, ApiError> {
        let principal = for_path(&state, &auth, &id.0).await?;
        principal.require_user_role(Role::Admin)?;
        let email = email_address(&body.0.email)?;
        let role: Role = body.0.role.into();
        // The address's user id: its account's, or one reserved for it now.
        let reserved = state
            .user_emails
            .execute(
                &email,
                UserEmailCommand::Reserve {
                    user_id: Uuid::new_v4().to_string(),
                },
                &eventlog::CommandMeta::new(principal.actor()).tenant(principal.organization_id),
            )
            .await
            .map_err(user_error)?;
        let user_id = reserved
            .state
            .user_id
            .ok_or_else(|| ApiError::internal("email reservation without a user id"))?;
        let command = OrganizationCommand::InviteMember {
            user_id: user_id.clone(),
            email: email.clone(),
            role,
            actor: principal.actor(),
        };
        let position = execute(&state, req, &principal, command).await?;
        let (organization, _) = state.organizations.load(&principal.org()).await?;
        let resend = Resend::new(state.config.resend.clone(), state.store.clone());
        let invitation = Email {
            from: EMAIL_FROM.into(),
            to: vec![email.clone()],
            subject: format!("You are invited to {} on CallFlex", organization.name),
            text: format!(
                "You were invited to join {} as {role:?}.\n\nSign in (or sign up with this \
                 address) and accept: {}/organizations/{}/accept",
                organization.name,
                state.config.public_url.trim_end_matches('/'),
                principal.organization_id
            ),
            html: None,
            idempotency_key: Some(format!("invite:{}:{user_id}:{position}", principal.org())),
        };
        if let Err(err) = resend.send(&invitation).await {
            tracing::warn!(error = %err, "invitation email failed");
        }
        settle(&state, position).await?;
        Ok(InviteResponse::Created(Json(MemberWritten {
            data: member(&state, &principal.org(), &user_id).await?,
            position,
        })))
    }

    /// Accept an invitation to this organization (as the invited, signed-in user).
    ///
    /// 404 `member_not_found` when there is no invitation for the caller.
    #[oai(
        path = "/organizations/:id/members/accept",
        method = "post",
        operation_id = "accept_invitation"
    )]
    async fn accept(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: BearerAuth,
        /// The organization id.
        id: Path<String>,
    ) -> Result<Json<MemberWritten>, ApiError> {
        let identity = authenticate(&state, &auth.0).await?;
        let user_id = identity.user_id()?.to_string();
        let org = organization_id(&id.0)?;
        let actor = identity.actor();
        let key = crate::http::idempotency_key(req);
        let done = crate::app::organizations::execute_as(
            &state,
            &crate::app::Caller::new(actor.clone(), org),
            "members",
            key.as_deref(),
            OrganizationCommand::AcceptInvite {
                user_id: user_id.clone(),
                actor: actor.clone(),
            },
        )
        .await
        .map_err(|e| match ApiError::from(e) {
            // Not invited (or no such organization): the same 404.
            ApiError::Forbidden(_) => {
                ApiError::not_found("member_not_found", "no invitation for you here")
            }
            other => other,
        })?;
        let position = done.result.last_position;
        settle(&state, position).await?;
        Ok(Json(MemberWritten {
            data: member(&state, &org.to_string(), &user_id).await?,
            position,
        }))
    }

    /// Change a member's role (admin; granting or taking away ownership needs owner).
    ///
    /// 409 `last_owner` when demoting the only owner.
    #[oai(
        path = "/organizations/:id/members/:uid",
        method = "patch",
        operation_id = "change_member_role"
    )]
    async fn change_role(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: BearerAuth,
        /// The organization id.
        id: Path<String>,
        /// The member's user id.
        uid: Path<String>,
        body: Json<RoleChange>,
    ) -> Result<Json<MemberWritten>, ApiError> {
        let principal = for_path(&state, &auth, &id.0).await?;
        principal.identity.user_id()?;
        let command = OrganizationCommand::ChangeMemberRole {
            user_id: uid.0.clone(),
            role: body.0.role.into(),
            actor: principal.actor(),
        };
        let position = execute(&state, req, &principal, command).await?;
        settle(&state, position).await?;
        Ok(Json(MemberWritten {
            data: member(&state, &principal.org(), &uid.0).await?,
            position,
        }))
    }

    /// Remove a member or an invitation; any member may remove themselves (leave).
    ///
    /// 409 `last_owner` when the only owner would leave.
    #[oai(
        path = "/organizations/:id/members/:uid",
        method = "delete",
        operation_id = "remove_member"
    )]
    async fn remove(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: BearerAuth,
        /// The organization id.
        id: Path<String>,
        /// The member's user id.
        uid: Path<String>,
    ) -> Result<RemoveResponse, ApiError> {
        let principal = for_path(&state, &auth, &id.0).await?;
        principal.identity.user_id()?;
        let command = OrganizationCommand::RemoveMember {
            user_id: uid.0,
            actor: principal.actor(),
        };
        let position = execute(&state, req, &principal, command).await?;
        settle(&state, position).await?;
        Ok(RemoveResponse::Removed)
    }
}
