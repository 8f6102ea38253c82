//! `POST /api/v1/auth/signup`, `signin`, `signout`, `forgot-password`, `reset-password` and
//! `GET /api/v1/auth/me`.
//!
//! - Passwords: argon2id; at least 10 characters, two kinds of characters, not the email
//!   (422 naming the rule).
//! - Sign-in: one answer for every failure (401 `invalid_credentials`, "invalid email or
//!   password", after the same argon2 work for unknown emails); rate-limited per account and
//!   per IP (429 with `Retry-After`).
//! - Sessions: 32 random bytes (base64url) returned once, stored as SHA-256; they expire
//!   (`SESSION_TTL_HOURS`) and are revoked by sign-out and by a password reset.
//! - Password reset: `forgot-password` always answers 202 (nothing tells whether the address
//!   has an account); the token (`<user id>.<32 random bytes>`) is mailed through Resend,
//!   valid for 1 hour, single-use.

use std::sync::Arc;

use aggregates::organization::{OrganizationCommand, Role};
use aggregates::user::{User, UserCommand, UserEmailCommand, UserError};
use chrono::{DateTime, Utc};
use eventlog::ExecuteError;
use poem::web::Data;
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sqlx::Row;
use uuid::Uuid;

use super::{email_address, meta, settle, user_error, RoleName, EMAIL_FROM};
use crate::auth::{self, password_problem, random_token, rule_of, token_hash};
use crate::http::error::{ApiError, ErrorBody, ErrorDetail};
use crate::http::query::principal::{authenticate, BearerAuth, Identity};
use crate::http::ApiTags;
use crate::providers::resend::{Email, Resend};
use crate::state::AppState;

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SignUp {
    #[oai(validator(max_length = 320, pattern = r"^\S+@\S+\.\S+$"))]
    pub email: String,
    /// At least 10 characters, two kinds (lowercase, uppercase, digits, symbols), not the email.
    pub password: String,
    #[oai(validator(min_length = 1, max_length = 200, pattern = r"\S"))]
    pub name: String,
    /// Creates an organization the new user owns.
    #[oai(validator(min_length = 1, max_length = 200, pattern = r"\S"))]
    pub organization_name: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SignIn {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub name: String,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct OrganizationRef {
    pub id: String,
    pub name: String,
    pub role: RoleName,
}

/// A new session. The token is shown only here; send it as `Authorization: Bearer <token>`.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SessionCreated {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: UserView,
    /// The organization created at sign-up, if one was asked for.
    pub organization: Option<OrganizationRef>,
    /// Log position written.
    pub position: i64,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ForgotPassword {
    #[oai(validator(max_length = 320, pattern = r"^\S+@\S+\.\S+$"))]
    pub email: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct VerifyEmail {
    /// The token from the verification email.
    pub token: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ResetPassword {
    /// The token from the reset email.
    pub token: String,
    pub password: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Accepted {
    pub accepted: bool,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Membership {
    pub organization_id: String,
    pub organization_name: String,
    pub role: RoleName,
    /// `active`, or `invited` (accept with `POST /organizations/{id}/members/accept`).
    pub status: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Me {
    pub user: UserView,
    pub memberships: Vec<Membership>,
}

#[derive(Debug, ApiResponse)]
pub enum SignInResponse {
    /// Signed in.
    #[oai(status = 200)]
    Ok(Json<SessionCreated>),
    /// Too many attempts for this account or from this address; retry after `Retry-After`
    /// seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
}

#[derive(Debug, ApiResponse)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

#[derive(Debug, ApiResponse)]
pub enum AcceptedResponse {
    /// Accepted; the email that fits the address is on its way.
    #[oai(status = 202)]
    Accepted(Json<Accepted>),
    /// Too many requests for this address or from this client; retry after `Retry-After`
    /// seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
}

fn rate_limited(wait: std::time::Duration, what: &str) -> (Json<ErrorBody>, u64) {
    let seconds = wait.as_secs().max(1);
    (
        Json(ErrorBody {
            error: ErrorDetail {
                code: "rate_limited".into(),
                message: format!("too many {what}; retry in {seconds} s"),
                details: Some(serde_json::json!({ "retry_after_seconds": seconds })),
            },
        }),
        seconds,
    )
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("invalid_credentials", "invalid email or password")
}

fn check_password(password: &str, email: &str) -> Result<(), ApiError> {
    match password_problem(password, email) {
        Some(problem) => {
            let (rule, message) = (rule_of(&problem).to_string(), problem.clone());
            let message = message
                .split_once(": ")
                .map(|(_, m)| m.to_string())
                .unwrap_or(message);
            Err(ApiError::Unprocessable(Json(ErrorBody {
                error: ErrorDetail {
                    code: "weak_password".into(),
                    message: format!("{rule}: {message}"),
                    details: Some(serde_json::json!({ "rule": rule })),
                },
            })))
        }
        None => Ok(()),
    }
}

fn user_view(user_id: &str, user: &User) -> UserView {
    UserView {
        id: user_id.to_string(),
        email: user.email.clone(),
        name: user.name.clone(),
    }
}

/// The client's address for rate limits. The peer address, unless the peer is a trusted
/// proxy (`CALLFLEX_TRUSTED_PROXIES`): then `X-Forwarded-For` is read from the right, skipping
/// trusted proxies, and the first address that is not one is the client. A header from an
/// untrusted peer is ignored, so a client cannot pick its own rate-limit bucket.
fn client_ip(state: &AppState, req: &Request) -> String {
    let Some(peer) = req.remote_addr().as_socket_addr().map(|a| a.ip()) else {
        return "unknown".into();
    };
    forwarded_client(peer, req.headers().get_all("x-forwarded-for"), |ip| {
        state.config.is_trusted_proxy(ip)
    })
    .to_string()
}

/// The client behind `peer` per the `X-Forwarded-For` values (see [`client_ip`]).
fn forwarded_client<'a>(
    peer: std::net::IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a poem::http::HeaderValue>,
    trusted: impl Fn(std::net::IpAddr) -> bool,
) -> std::net::IpAddr {
    if !trusted(peer) {
        return peer;
    }
    let hops: Vec<std::net::IpAddr> = forwarded_for
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|hop| hop.trim().parse().ok())
        .collect::<Option<Vec<_>>>()
        // A malformed header is not evidence of anything: the proxy is the client.
        .unwrap_or_default();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = hop;
        if !trusted(hop) {
            break;
        }
    }
    client
}

/// Opens a session for a registered user; returns (token, expiry, position).
async fn open_session(
    state: &AppState,
    user_id: &str,
) -> Result<(String, DateTime<Utc>, i64), ApiError> {
    let token = random_token();
    let expires_at = Utc::now() + chrono::TimeDelta::hours(state.config.session_ttl_hours);
    let done = state
        .users
        .execute(
            user_id,
            UserCommand::SignIn {
                session_id: Uuid::new_v4().to_string(),
                token_hash: token_hash(&token),
                expires_at,
            },
            &eventlog::CommandMeta::new(format!("user:{user_id}")),
        )
        .await
        .map_err(user_error)?;
    Ok((token, expires_at, done.result.last_position))
}

/// The registered user owning `email`, if any (from the aggregates, never the read model).
async fn find_user(state: &AppState, email: &str) -> Result<Option<(String, User)>, ApiError> {
    let (owner, _) = state.user_emails.load(email).await?;
    let Some(user_id) = owner.user_id.filter(|_| owner.claimed) else {
        return Ok(None);
    };
    let (user, _) = state.users.load(&user_id).await?;
    Ok(user.registered.then_some((user_id, user)))
}

pub struct AuthApi;

#[OpenApi(prefix_path = "/api/v1/auth", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create an account (and, with `organization_name`, an organization it owns) and email a
    /// verification token; `POST /api/v1/auth/verify-email` with it signs in.
    ///
    /// Always 202 `{"accepted": true}` for a valid request, whether or not the address already
    /// has an account (its owner gets a "you already have an account" email instead, or a new
    /// verification email while unverified), so the answer never tells who is registered.
    /// 422 `weak_password` naming the rule (`details.rule`); 429 when asked too often for one
    /// address or from one client. An address that was invited keeps the invitation: accept
    /// it with `POST /api/v1/organizations/{id}/members/accept` once signed in.
    #[oai(path = "/signup", method = "post", operation_id = "sign_up")]
    async fn sign_up(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<SignUp>,
    ) -> Result<AcceptedResponse, ApiError> {
        let started = std::time::Instant::now();
        let body = body.0;
        let email = email_address(&body.email)?;
        let name = body.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ApiError::unprocessable(
                "invalid_input",
                "name must have 1 to 200 characters",
            ));
        }
        let org_name = body.organization_name.map(|n| n.trim().to_string());
        if org_name
            .as_ref()
            .is_some_and(|n| n.is_empty() || n.chars().count() > 200)
        {
            return Err(ApiError::unprocessable(
                "invalid_input",
                "organization_name must have 1 to 200 characters",
            ));
        }
        check_password(&body.password, &email)?;
        if let Err(wait) = state
            .sign_in_limiter
            .check(&format!("signup:{email}"), &client_ip(&state, req))
            .await
        {
            let (body, seconds) = rate_limited(wait, "sign-up requests");
            return Ok(AcceptedResponse::TooManyRequests(body, seconds));
        }
        let password_hash = auth::hash_password(body.password)
            .await
            .map_err(ApiError::internal)?;
        let accepted = || {
            Ok(AcceptedResponse::Accepted(Json(Accepted {
                accepted: true,
            })))
        };
        // Claim the address: one stream per address, so concurrent sign-ups cannot both win.
        let fresh = Uuid::new_v4().to_string();
        let system = eventlog::CommandMeta::new("system:signup");
        let claimed = match state
            .user_emails
            .execute(&email, UserEmailCommand::Claim { user_id: fresh }, &system)
            .await
        {
            Ok(done) => Some(done.state.user_id.unwrap_or_default()),
            Err(ExecuteError::Domain(UserError::EmailTaken)) => {
                // Claimed but never registered (a sign-up that failed half-way) may finish;
                // the user stream's concurrency check still lets only one sign-up win.
                let (owner, _) = state.user_emails.load(&email).await?;
                let id = owner.user_id.unwrap_or_default();
                let (user, _) = state.users.load(&id).await?;
                (!user.registered && !id.is_empty()).then_some(id)
            }
            Err(err) => return Err(user_error(err)),
        };
        let Some(user_id) = claimed else {
            // The address has an account: answer exactly as for a new one, as late as one
            // (see `pace`), and tell the owner by email instead.
            notify_existing_in_background(&state, email);
            state.sign_up_pace.wait_out(started).await;
            return accepted();
        };
        let uid = Uuid::parse_str(&user_id).map_err(ApiError::internal)?;
        let actor = format!("user:{user_id}");
        let registered = state
            .users
            .execute(
                &user_id,
                UserCommand::Register {
                    user_id: uid,
                    email: email.clone(),
                    password_hash,
                    name,
                },
                &meta(req, &actor, None, "signup"),
            )
            .await;
        let registered = match registered {
            Ok(done) => done,
            Err(ExecuteError::Domain(UserError::AlreadyRegistered)) => {
                // A concurrent sign-up with the same address won.
                notify_existing_in_background(&state, email);
                state.sign_up_pace.wait_out(started).await;
                return accepted();
            }
            Err(other) => return Err(user_error(other)),
        };
        let mut position = registered.result.last_position;
        if let Some(org_name) = org_name {
            let id = Uuid::new_v4();
            let done = crate::app::organizations::execute_as(
                &state,
                &crate::app::Caller::new(actor.clone(), id),
                "sign-up",
                None,
                OrganizationCommand::Create {
                    id,
                    name: org_name,
                    owner_user_id: user_id.clone(),
                    owner_email: email.clone(),
                    actor: actor.clone(),
                },
            )
            .await?;
            position = position.max(done.result.last_position);
        }
        let token = request_verification(&state, &user_id).await?;
        position = position.max(token.1);
        let mail = state.0.clone();
        tokio::spawn(async move {
            if let Err(err) = send_verification(&mail, &email, &token.0).await {
                tracing::warn!(error = ?err.detail(), "verification email failed");
            }
        });
        settle(&state, position).await?;
        state.sign_up_pace.new_address_took(started.elapsed());
        state.sign_up_pace.wait_out(started).await;
        accepted()
    }

    /// Verify the email address with the emailed token (single-use, valid 24 hours); signs
    /// in. 400 `invalid_verification_token` for an unknown, used or expired token.
    #[oai(path = "/verify-email", method = "post", operation_id = "verify_email")]
    async fn verify_email(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<VerifyEmail>,
    ) -> Result<Json<SessionCreated>, ApiError> {
        let invalid = || user_error(ExecuteError::Domain(UserError::InvalidVerificationToken));
        let token = body.0.token.trim().to_string();
        let user_id = token
            .split_once('.')
            .map(|(id, _)| id.to_string())
            .filter(|id| Uuid::parse_str(id).is_ok())
            .ok_or_else(invalid)?;
        let (user, _) = state.users.load(&user_id).await?;
        if !user.registered {
            return Err(invalid());
        }
        let actor = format!("user:{user_id}");
        let verified = state
            .users
            .execute(
                &user_id,
                UserCommand::VerifyEmail {
                    token_hash: token_hash(&token),
                    at: Utc::now(),
                },
                &meta(req, &actor, None, "verify-email"),
            )
            .await
            .map_err(user_error)?;
        let (session, expires_at, position) = open_session(&state, &user_id).await?;
        settle(&state, position).await?;
        let organization = memberships(&state, &user_id)
            .await?
            .into_iter()
            .find(|m| m.status == "active")
            .map(|m| OrganizationRef {
                id: m.organization_id,
                name: m.organization_name,
                role: m.role,
            });
        Ok(Json(SessionCreated {
            token: session,
            expires_at,
            user: user_view(&user_id, &verified.state),
            organization,
            position,
        }))
    }

    /// Sign in with email and password; returns a session token.
    ///
    /// Any wrong part answers 401 `invalid_credentials` ("invalid email or password").
    /// Attempts are limited per account and per client address (429 with `Retry-After`).
    #[oai(path = "/signin", method = "post", operation_id = "sign_in")]
    async fn sign_in(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<SignIn>,
    ) -> Result<SignInResponse, ApiError> {
        let body = body.0;
        let email = aggregates::user::normalize_email(&body.email);
        if let Err(wait) = state
            .sign_in_limiter
            .check(&email, &client_ip(&state, req))
            .await
        {
            let (body, seconds) = rate_limited(wait, "sign-in attempts");
            return Ok(SignInResponse::TooManyRequests(body, seconds));
        }
        let found = if email.is_empty() || email.len() > 320 || body.password.len() > 1024 {
            None
        } else {
            find_user(&state, &email).await?
        };
        let hash = found.as_ref().map(|(_, u)| u.password_hash.clone());
        let valid = auth::verify_password(body.password, hash).await;
        let Some((user_id, user)) = found else {
            return Err(invalid_credentials());
        };
        // An unverified account answers like a wrong password: otherwise signing up with
        // someone's address and then signing in would tell whether it had an account.
        if valid && !user.email_verified {
            return Err(invalid_credentials());
        }
        if !valid {
            let failure = UserCommand::RecordSignInFailure { at: Utc::now() };
            let actor = format!("anonymous:{}", client_ip(&state, req));
            // Recorded in the background: the answer must not take longer for an existing
            // account than for an unknown address.
            let state = state.0.clone();
            tokio::spawn(async move {
                let meta = eventlog::CommandMeta::new(actor);
                if let Err(err) = state.users.execute(&user_id, failure, &meta).await {
                    tracing::warn!(error = %err, "could not record a failed sign-in");
                }
            });
            return Err(invalid_credentials());
        }
        let (token, expires_at, position) = open_session(&state, &user_id).await?;
        settle(&state, position).await?;
        Ok(SignInResponse::Ok(Json(SessionCreated {
            token,
            expires_at,
            user: user_view(&user_id, &user),
            organization: None,
            position,
        })))
    }

    /// End the current session; the token stops working immediately.
    #[oai(path = "/signout", method = "post", operation_id = "sign_out")]
    async fn sign_out(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: BearerAuth,
    ) -> Result<NoContent, ApiError> {
        let identity = authenticate(&state, &auth.0).await?;
        let Identity::User {
            user_id,
            session_id,
        } = identity
        else {
            return Err(ApiError::forbidden(
                "user_required",
                "API keys do not sign out; revoke them instead",
            ));
        };
        let actor = format!("user:{user_id}");
        let done = state
            .users
            .execute(
                &user_id,
                UserCommand::SignOut { session_id },
                &meta(req, &actor, None, "signout"),
            )
            .await
            .map_err(user_error)?;
        settle(&state, done.result.last_position).await?;
        Ok(NoContent::Done)
    }

    /// Ask for a password reset email. Always 202, whether or not the address has an account
    /// (429 when asked too often for one address or from one client, whether or not it has).
    #[oai(
        path = "/forgot-password",
        method = "post",
        operation_id = "forgot_password"
    )]
    async fn forgot_password(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<ForgotPassword>,
    ) -> Result<AcceptedResponse, ApiError> {
        let email = aggregates::user::normalize_email(&body.0.email);
        // A budget per address (separate from sign-in's) and the per-client one.
        if let Err(wait) = state
            .sign_in_limiter
            .check(&format!("reset:{email}"), &client_ip(&state, req))
            .await
        {
            let (body, seconds) = rate_limited(wait, "password reset requests");
            return Ok(AcceptedResponse::TooManyRequests(body, seconds));
        }
        if email.contains('@') && email.len() <= 320 {
            // In the background: the answer takes the same time whether or not the address
            // has an account.
            let state = state.0.clone();
            tokio::spawn(async move {
                if let Err(err) = send_reset(&state, &email).await {
                    tracing::warn!(error = ?err.detail(), "password reset email failed");
                }
            });
        }
        Ok(AcceptedResponse::Accepted(Json(Accepted {
            accepted: true,
        })))
    }

    /// Set a new password with the emailed token. The token is single-use; every session of
    /// the account is revoked.
    ///
    /// 400 `invalid_reset_token` for an unknown, used or expired token; 422 `weak_password`.
    #[oai(
        path = "/reset-password",
        method = "post",
        operation_id = "reset_password"
    )]
    async fn reset_password(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<ResetPassword>,
    ) -> Result<NoContent, ApiError> {
        let body = body.0;
        let invalid = || user_error(ExecuteError::Domain(UserError::InvalidResetToken));
        let token = body.token.trim().to_string();
        let user_id = token
            .split_once('.')
            .map(|(id, _)| id.to_string())
            .filter(|id| Uuid::parse_str(id).is_ok())
            .ok_or_else(invalid)?;
        let hash = token_hash(&token);
        let (user, _) = state.users.load(&user_id).await?;
        let now = Utc::now();
        let usable = user
            .resets
            .values()
            .any(|r| r.token_hash == hash && r.expires_at > now);
        if !user.registered || !usable {
            return Err(invalid());
        }
        check_password(&body.password, &user.email)?;
        let password_hash = auth::hash_password(body.password)
            .await
            .map_err(ApiError::internal)?;
        let actor = format!("user:{user_id}");
        let done = state
            .users
            .execute(
                &user_id,
                UserCommand::ResetPassword {
                    token_hash: hash,
                    password_hash,
                    at: now,
                },
                &meta(req, &actor, None, "reset-password"),
            )
            .await
            .map_err(user_error)?;
        settle(&state, done.result.last_position).await?;
        Ok(NoContent::Done)
    }

    /// The signed-in user and their organizations (including pending invitations).
    #[oai(path = "/me", method = "get", operation_id = "get_me")]
    async fn me(
        &self,
        state: Data<&Arc<AppState>>,
        auth: BearerAuth,
    ) -> Result<Json<Me>, ApiError> {
        let identity = authenticate(&state, &auth.0).await?;
        let user_id = identity.user_id()?.to_string();
        let (user, _) = state.users.load(&user_id).await?;
        Ok(Json(Me {
            user: user_view(&user_id, &user),
            memberships: memberships(&state, &user_id).await?,
        }))
    }
}

/// The user's organizations (read model), invitations included.
async fn memberships(state: &AppState, user_id: &str) -> Result<Vec<Membership>, ApiError> {
    let rows = sqlx::query(
        "SELECT m.organization_id, o.name, m.role, m.status FROM memberships m \
         JOIN organizations_list o ON o.id = m.organization_id \
         WHERE m.user_id = $1 AND o.deleted = 0 ORDER BY o.name, m.organization_id",
    )
    .bind(user_id.to_string())
    .fetch_all(state.store.pool())
    .await?;
    let mut memberships = Vec::with_capacity(rows.len());
    for row in rows {
        let role: String = row.try_get("role")?;
        memberships.push(Membership {
            organization_id: row.try_get("organization_id")?,
            organization_name: row.try_get("name")?,
            role: parse_role(&role).into(),
            status: row.try_get("status")?,
        });
    }
    Ok(memberships)
}

/// A role as stored in the read model.
pub fn parse_role(role: &str) -> Role {
    match role {
        "owner" => Role::Owner,
        "admin" => Role::Admin,
        "member" => Role::Member,
        "auditor" => Role::Auditor,
        _ => Role::Viewer,
    }
}

/// Issues a reset token for `email` (if it has an account) and mails it.
async fn send_reset(state: &AppState, email: &str) -> Result<(), ApiError> {
    let Some((user_id, _)) = find_user(state, email).await? else {
        return Ok(());
    };
    let reset_id = Uuid::new_v4().to_string();
    let token = format!("{user_id}.{}", random_token());
    state
        .users
        .execute(
            &user_id,
            UserCommand::RequestPasswordReset {
                reset_id: reset_id.clone(),
                token_hash: token_hash(&token),
                expires_at: Utc::now() + auth::RESET_TOKEN_TTL,
            },
            &eventlog::CommandMeta::new("system:password-reset"),
        )
        .await
        .map_err(user_error)?;
    let link = format!(
        "{}/reset-password?token={token}",
        state.config.public_url.trim_end_matches('/')
    );
    send_email(
        state,
        email,
        "Reset your CallFlex password",
        format!(
            "Someone asked to reset the password of your CallFlex account.\n\n\
             Reset it within one hour: {link}\n\nReset token: {token}\n\n\
             If this was not you, ignore this email; your password stays unchanged."
        ),
        format!("password-reset:{reset_id}"),
    )
    .await
}

/// How long an email verification token is valid.
const VERIFICATION_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Issues a verification token (`<user id>.<32 random bytes>`, stored hashed); returns it
/// with the log position written.
async fn request_verification(state: &AppState, user_id: &str) -> Result<(String, i64), ApiError> {
    let token = format!("{user_id}.{}", random_token());
    let done = state
        .users
        .execute(
            user_id,
            UserCommand::RequestEmailVerification {
                verification_id: Uuid::new_v4().to_string(),
                token_hash: token_hash(&token),
                expires_at: Utc::now() + VERIFICATION_TTL,
            },
            &eventlog::CommandMeta::new("system:email-verification"),
        )
        .await
        .map_err(user_error)?;
    Ok((token, done.result.last_position))
}

async fn send_verification(state: &AppState, email: &str, token: &str) -> Result<(), ApiError> {
    let link = format!(
        "{}/verify-email?token={token}",
        state.config.public_url.trim_end_matches('/')
    );
    send_email(
        state,
        email,
        "Verify your CallFlex email address",
        format!(
            "Welcome to CallFlex. Confirm this address within 24 hours: {link}\n\n\
             Verification token: {token}\n\n\
             If you did not sign up, ignore this email."
        ),
        format!("verify-email:{}", token_hash(token)),
    )
    .await
}

/// Someone signed up with an address that has an account: its owner is told (or, while the
/// account is unverified, sent a fresh verification token). In the background, so the
/// sign-up answer does not wait for it.
fn notify_existing_in_background(state: &Arc<AppState>, email: String) {
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(err) = notify_existing(&state, &email).await {
            tracing::warn!(error = ?err.detail(), "already-registered email failed");
        }
    });
}

async fn notify_existing(state: &AppState, email: &str) -> Result<(), ApiError> {
    let Some((user_id, user)) = find_user(state, email).await? else {
        return Ok(());
    };
    if !user.email_verified {
        let (token, _) = request_verification(state, &user_id).await?;
        return send_verification(state, email, &token).await;
    }
    let base = state.config.public_url.trim_end_matches('/');
    send_email(
        state,
        email,
        "You already have a CallFlex account",
        format!(
            "Someone (perhaps you) tried to sign up for CallFlex with this address, which \
             already has an account. Sign in at {base}/signin, or reset your password at \
             {base}/forgot-password.\n\nIf this was not you, ignore this email; nothing \
             changed."
        ),
        format!("already-registered:{}", Uuid::new_v4()),
    )
    .await
}

/// Sends one plain-text email through Resend (sandbox: recorded in `outbound_requests`).
async fn send_email(
    state: &AppState,
    to: &str,
    subject: &str,
    text: String,
    idempotency_key: String,
) -> Result<(), ApiError> {
    let resend = Resend::new(state.config.resend.clone(), state.store.clone());
    resend
        .send(&Email {
            from: EMAIL_FROM.into(),
            to: vec![to.to_string()],
            subject: subject.into(),
            text,
            html: None,
            idempotency_key: Some(idempotency_key),
        })
        .await
        .map_err(ApiError::internal)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use poem::http::HeaderValue;

    use super::forwarded_client;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn client(peer: &str, header: &[&str]) -> IpAddr {
        let values: Vec<HeaderValue> = header
            .iter()
            .map(|h| HeaderValue::from_str(h).expect("header value"))
            .collect();
        let trusted = |ip: IpAddr| ip.is_loopback() || ip.to_string().starts_with("10.");
        forwarded_client(self::ip(peer), &values, trusted)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(client("203.0.113.9", &["198.51.100.1"]), ip("203.0.113.9"));
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        assert_eq!(
            client("127.0.0.1", &["6.6.6.6, 198.51.100.7, 10.0.0.2"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            client("127.0.0.1", &["6.6.6.6", "198.51.100.8"]),
            ip("198.51.100.8")
        );
        assert_eq!(client("127.0.0.1", &[]), ip("127.0.0.1"));
        assert_eq!(client("127.0.0.1", &["not-an-ip"]), ip("127.0.0.1"));
    }
}
