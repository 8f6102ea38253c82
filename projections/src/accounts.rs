//! The `accounts` read model: what authentication and listings look up.
//!
//! - `users`: id, email, name (from `UserRegistered`);
//! - `sessions`: by token hash, revoked by `SignedOut` and `PasswordReset`;
//! - `api_keys`: by key hash, per organization, revoked by `ApiKeyRevoked`;
//! - `memberships`: who belongs to which organization with which role and status;
//! - `organizations_list`: names and deletion of organizations.
//!
//! A lookup here is only where authentication starts: the request is admitted after the
//! User / Organization aggregate confirms the session or key is still live, so projection
//! lag can never keep a revoked credential working.

use aggregates::organization::{ApiKeyScope, MemberStatus, OrganizationEvent, Role};
use aggregates::user::UserEvent;
use async_trait::async_trait;
use eventlog::StoredEvent;
use sqlx::{Any, Transaction};

use crate::projector::{DomainEvent, ProjectionError, Projector, Tables};
use crate::sql::ms;

pub struct AccountsProjector;

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Owner => "owner",
        Role::Admin => "admin",
        Role::Member => "member",
        Role::Viewer => "viewer",
        Role::Auditor => "auditor",
    }
}

pub fn status_name(status: MemberStatus) -> &'static str {
    match status {
        MemberStatus::Invited => "invited",
        MemberStatus::Active => "active",
    }
}

/// Scopes as stored: comma-separated (`read,write`).
pub fn scopes_text(scopes: &[ApiKeyScope]) -> String {
    scopes
        .iter()
        .map(|s| match s {
            ApiKeyScope::Read => "read",
            ApiKeyScope::Write => "write",
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl AccountsProjector {
    async fn apply_user(
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        stored: &StoredEvent,
        event: &UserEvent,
    ) -> Result<(), ProjectionError> {
        let user_id = stored.aggregate_id.clone();
        let sessions = tables.name("sessions");
        match event {
            UserEvent::UserRegistered { email, name, .. } => {
                let users = tables.name("users");
                sqlx::query(&format!(
                    "INSERT INTO {users} (id, email, name, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO NOTHING"
                ))
                .bind(user_id)
                .bind(email.clone())
                .bind(name.clone())
                .bind(stored.recorded_at)
                .execute(&mut **tx)
                .await?;
            }
            UserEvent::SignedIn {
                session_id,
                token_hash,
                expires_at,
            } => {
                sqlx::query(&format!(
                    "INSERT INTO {sessions} (token_hash, session_id, user_id, expires_at, \
                     revoked, created_at) VALUES ($1, $2, $3, $4, 0, $5) \
                     ON CONFLICT (token_hash) DO NOTHING"
                ))
                .bind(token_hash.clone())
                .bind(session_id.clone())
                .bind(user_id)
                .bind(ms(expires_at))
                .bind(stored.recorded_at)
                .execute(&mut **tx)
                .await?;
            }
            UserEvent::SignedOut { session_id } => {
                sqlx::query(&format!(
                    "UPDATE {sessions} SET revoked = 1 WHERE user_id = $1 AND session_id = $2"
                ))
                .bind(user_id)
                .bind(session_id.clone())
                .execute(&mut **tx)
                .await?;
            }
            UserEvent::PasswordReset { .. } => {
                sqlx::query(&format!(
                    "UPDATE {sessions} SET revoked = 1 WHERE user_id = $1"
                ))
                .bind(user_id)
                .execute(&mut **tx)
                .await?;
            }
            UserEvent::SignInFailed { .. }
            | UserEvent::PasswordResetRequested { .. }
            | UserEvent::EmailVerificationRequested { .. }
            | UserEvent::EmailVerified { .. } => {}
        }
        Ok(())
    }

    async fn upsert_member(
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        org: &str,
        user_id: &str,
        email: &str,
        role: Role,
        status: MemberStatus,
    ) -> Result<(), ProjectionError> {
        let memberships = tables.name("memberships");
        sqlx::query(&format!(
            "INSERT INTO {memberships} (organization_id, user_id, email, role, status) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (organization_id, user_id) DO UPDATE SET \
             email = excluded.email, role = excluded.role, status = excluded.status"
        ))
        .bind(org.to_string())
        .bind(user_id.to_string())
        .bind(email.to_string())
        .bind(role_name(role))
        .bind(status_name(status))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn apply_organization(
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        stored: &StoredEvent,
        event: &OrganizationEvent,
    ) -> Result<(), ProjectionError> {
        let org = stored.aggregate_id.as_str();
        let list = tables.name("organizations_list");
        let memberships = tables.name("memberships");
        let keys = tables.name("api_keys");
        match event {
            OrganizationEvent::OrganizationCreated { name, .. } => {
                sqlx::query(&format!(
                    "INSERT INTO {list} (id, name, deleted, created_at) VALUES ($1, $2, 0, $3) \
                     ON CONFLICT (id) DO NOTHING"
                ))
                .bind(org.to_string())
                .bind(name.clone())
                .bind(stored.recorded_at)
                .execute(&mut **tx)
                .await?;
            }
            OrganizationEvent::ProfileUpdated { name: Some(name) } => {
                sqlx::query(&format!("UPDATE {list} SET name = $1 WHERE id = $2"))
                    .bind(name.clone())
                    .bind(org.to_string())
                    .execute(&mut **tx)
                    .await?;
            }
            OrganizationEvent::OrganizationDeleted {} => {
                sqlx::query(&format!("UPDATE {list} SET deleted = 1 WHERE id = $1"))
                    .bind(org.to_string())
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(&format!(
                    "UPDATE {keys} SET revoked = 1 WHERE organization_id = $1"
                ))
                .bind(org.to_string())
                .execute(&mut **tx)
                .await?;
            }
            OrganizationEvent::MemberInvited {
                user_id,
                email,
                role,
            } => {
                let status = MemberStatus::Invited;
                Self::upsert_member(tx, tables, org, user_id, email, *role, status).await?;
            }
            OrganizationEvent::MemberJoined {
                user_id,
                email,
                role,
            } => {
                let status = MemberStatus::Active;
                Self::upsert_member(tx, tables, org, user_id, email, *role, status).await?;
            }
            OrganizationEvent::MemberRoleChanged { user_id, role } => {
                sqlx::query(&format!(
                    "UPDATE {memberships} SET role = $1 WHERE organization_id = $2 AND user_id = $3"
                ))
                .bind(role_name(*role))
                .bind(org.to_string())
                .bind(user_id.clone())
                .execute(&mut **tx)
                .await?;
            }
            OrganizationEvent::MemberRemoved { user_id } => {
                sqlx::query(&format!(
                    "DELETE FROM {memberships} WHERE organization_id = $1 AND user_id = $2"
                ))
                .bind(org.to_string())
                .bind(user_id.clone())
                .execute(&mut **tx)
                .await?;
            }
            OrganizationEvent::ApiKeyCreated {
                key_id,
                name,
                key_hash,
                scopes,
            } => {
                sqlx::query(&format!(
                    "INSERT INTO {keys} (key_hash, id, organization_id, name, scopes, created_at, \
                     revoked) VALUES ($1, $2, $3, $4, $5, $6, 0) ON CONFLICT (key_hash) DO NOTHING"
                ))
                .bind(key_hash.clone())
                .bind(key_id.clone())
                .bind(org.to_string())
                .bind(name.clone())
                .bind(scopes_text(scopes))
                .bind(stored.recorded_at)
                .execute(&mut **tx)
                .await?;
            }
            OrganizationEvent::ApiKeyRevoked { key_id } => {
                sqlx::query(&format!(
                    "UPDATE {keys} SET revoked = 1 WHERE organization_id = $1 AND id = $2"
                ))
                .bind(org.to_string())
                .bind(key_id.clone())
                .execute(&mut **tx)
                .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[async_trait]
impl Projector for AccountsProjector {
    fn name(&self) -> &'static str {
        "accounts"
    }

    fn wants(&self, event: &DomainEvent) -> bool {
        matches!(event, DomainEvent::User(_) | DomainEvent::Organization(_))
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "users",
            "sessions",
            "api_keys",
            "memberships",
            "organizations_list",
        ]
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        tables: Tables,
        stored: &StoredEvent,
        event: &DomainEvent,
    ) -> Result<(), ProjectionError> {
        match event {
            DomainEvent::User(e) => Self::apply_user(tx, tables, stored, e).await,
            DomainEvent::Organization(e) => Self::apply_organization(tx, tables, stored, e).await,
            _ => Ok(()),
        }
    }
}
