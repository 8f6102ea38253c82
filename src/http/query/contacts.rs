//! `GET/POST /api/v1/contacts`, `GET/PATCH/DELETE /api/v1/contacts/{id}` and
//! `GET /api/v1/contacts/{id}/calls`.
//!
//! Contacts are created automatically from callers' numbers by the contacts projector (id
//! derived from the number) and can be created and edited by people. Edits are commands on
//! the Organization aggregate and become events; the read model follows. A contact that only
//! exists in the read model (automatic) is first adopted by the aggregate under the SAME id
//! (`CreateContact`, source `caller`), so its call history stays attached.
//!
//! Command answers carry the log `position` they wrote (for `DELETE`, in `X-Position`):
//! pass it as `min_position` to read your own write.

use std::sync::Arc;

use aggregates::organization::{ContactSource, OrganizationCommand};
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::http::error::ApiError;
use crate::http::query::calls::{self, CallFilter, CallPage};
use crate::http::query::pagination::{self, Keyset};
use crate::http::query::principal::{self, OrganizationHeader, Principal};
use crate::http::query::{
    at, begin, like_pattern, reject_unknown_parameters, text, Arg, Lenient, RowExt, Scope, Sql,
    CONSISTENCY_WAIT,
};
use crate::http::ApiTags;
use crate::state::AppState;

pub const MAX_FIELD_CHARS: usize = 2_000;

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Contact {
    pub id: String,
    pub phone_number: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub notes: Option<String>,
    /// `caller` (created from a call) or `manual`.
    pub source: String,
    pub call_count: i64,
    pub first_call_at: Option<DateTime<Utc>>,
    pub last_call_at: Option<DateTime<Utc>>,
    pub last_call_id: Option<String>,
    /// Summary of the most recent call.
    pub last_summary: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ContactPage {
    pub data: Vec<Contact>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
    pub position: i64,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ContactResponse {
    pub data: Contact,
    pub position: i64,
}

/// The answer to a contact command.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ContactWritten {
    pub id: String,
    /// The log position the command wrote (0 when it changed nothing).
    pub position: i64,
    /// The contact as projected, once the read model reflects the write (absent if that
    /// took longer than 5 s).
    pub data: Option<Contact>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NewContact {
    /// The contact's phone number (E.164); unique per organization.
    pub phone_number: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub notes: Option<String>,
}

/// Fields to change; absent fields are left as they are.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ContactChanges {
    pub name: Option<String>,
    pub email: Option<String>,
    pub notes: Option<String>,
}

#[derive(ApiResponse)]
pub enum CreateContactResponse {
    /// Created.
    #[oai(status = 201)]
    Created(Json<ContactWritten>),
}

#[derive(ApiResponse)]
pub enum DeleteContactResponse {
    /// Deleted. `X-Position` is the log position written.
    #[oai(status = 204)]
    Deleted(#[oai(header = "X-Position")] i64),
}

const CONTACT_COLUMNS: &str = "id, phone_number, name, email, notes, source, call_count, \
     first_call_at, last_call_at, last_call_id, last_summary, created_at, updated_at";

fn contact_from_row(r: &AnyRow) -> Result<Contact, ApiError> {
    Ok(Contact {
        id: r.str("id")?,
        phone_number: r.str("phone_number")?,
        name: r.opt_str("name")?,
        email: r.opt_str("email")?,
        notes: r.opt_str("notes")?,
        source: r.str("source")?,
        call_count: r.i64("call_count")?,
        first_call_at: r.opt_i64("first_call_at")?.map(at),
        last_call_at: r.opt_i64("last_call_at")?.map(at),
        last_call_id: r.opt_str("last_call_id")?,
        last_summary: r.opt_str("last_summary")?,
        created_at: at(r.i64("created_at")?),
        updated_at: at(r.i64("updated_at")?),
    })
}

/// A live (not deleted) contact of the organization, from the read model.
async fn find(state: &AppState, org: &str, id: &str) -> Result<Option<Contact>, ApiError> {
    let sql = Sql {
        text: format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = $1 AND organization_id = $2 \
             AND deleted = 0"
        ),
        args: vec![Arg::Str(id.to_string()), Arg::Str(org.to_string())],
    };
    sql.fetch_optional(state)
        .await?
        .map(|r| contact_from_row(&r))
        .transpose()
}

fn not_found() -> ApiError {
    ApiError::not_found("contact_not_found", "no such contact")
}

fn check_len(name: &str, value: &Option<String>) -> Result<(), ApiError> {
    match value {
        Some(v) if v.chars().count() > MAX_FIELD_CHARS => Err(ApiError::unprocessable(
            "invalid_input",
            format!("{name} may be at most {MAX_FIELD_CHARS} characters"),
        )),
        _ => Ok(()),
    }
}

/// Runs one command on the principal's organization; returns the last position written.
async fn execute(
    state: &AppState,
    req: &Request,
    principal: &Principal,
    command: OrganizationCommand,
) -> Result<i64, ApiError> {
    let key = crate::http::idempotency_key(req);
    let done = crate::app::organizations::execute_as(
        state,
        &principal.caller(),
        "contacts",
        key.as_deref(),
        command,
    )
    .await?;
    Ok(done.result.last_position)
}

/// Waits (bounded) for `position`, then reads the contact back.
async fn written(
    state: &AppState,
    principal: &Principal,
    id: String,
    position: i64,
) -> Result<ContactWritten, ApiError> {
    let caught_up = state.wait_for_position(position, CONSISTENCY_WAIT).await?;
    let data = if caught_up {
        find(state, &principal.org(), &id).await?
    } else {
        None
    };
    Ok(ContactWritten { id, position, data })
}

/// Makes sure the aggregate knows contact `id` (adopting an automatic one), or 404.
/// Returns the position written by the adoption (0 if none was needed).
async fn adopt(
    state: &AppState,
    req: &Request,
    principal: &Principal,
    id: &str,
    changes: Option<&ContactChanges>,
) -> Result<(bool, i64), ApiError> {
    let (organization, _) = state.organizations.load(&principal.org()).await?;
    if organization.contacts.contains(id) {
        return Ok((false, 0));
    }
    let existing = find(state, &principal.org(), id)
        .await?
        .ok_or_else(not_found)?;
    let position = execute(
        state,
        req,
        principal,
        OrganizationCommand::CreateContact {
            contact_id: id.to_string(),
            phone_number: existing.phone_number,
            name: changes.and_then(|c| c.name.clone()).or(existing.name),
            email: changes.and_then(|c| c.email.clone()).or(existing.email),
            notes: changes.and_then(|c| c.notes.clone()).or(existing.notes),
            source: ContactSource::Caller,
            actor: principal.actor(),
        },
    )
    .await?;
    Ok((true, position))
}

pub struct ContactsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Contacts")]
impl ContactsApi {
    /// List contacts, newest first (deleted contacts are excluded).
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/contacts", method = "get", operation_id = "list_contacts")]
    async fn list_contacts(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// Matches name or phone number (case-insensitive substring).
        q: Query<Option<String>>,
        /// Page size, 1 to 100 (default 25).
        limit: Query<Option<Lenient<crate::http::query::position::PageSize>>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: Query<Option<Lenient<crate::http::query::position::Position>>>,
    ) -> Result<Json<ContactPage>, ApiError> {
        let scope = begin(
            &state,
            req,
            &auth,
            &["q", "limit", "cursor"],
            min_position.0,
        )
        .await?;
        let limit = pagination::limit(limit.0)?;
        let cursor = pagination::keyset(cursor.0.as_deref())?;
        let q = text(q.0, "q")?;
        let mut sql = Sql::new(format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts WHERE deleted = 0 AND organization_id = "
        ));
        let org = sql.arg(Arg::Str(scope.org()));
        sql.push(&org);
        if let Some(q) = q {
            let p = sql.arg(Arg::Str(like_pattern(&q)));
            sql.push(&format!(
                " AND (LOWER(COALESCE(name, '')) LIKE {p} ESCAPE '\\' \
                 OR LOWER(phone_number) LIKE {p} ESCAPE '\\')"
            ));
        }
        if let Some(c) = cursor {
            let k = sql.arg(Arg::I64(c.key));
            let id = sql.arg(Arg::Str(c.id));
            sql.push(&format!(
                " AND created_at <= {k} AND (created_at < {k} OR (created_at = {k} AND id < {id}))"
            ));
        }
        let n = sql.arg(Arg::I64(limit + 1));
        sql.push(&format!(" ORDER BY created_at DESC, id DESC LIMIT {n}"));
        let mut data = sql
            .fetch_all(&state)
            .await?
            .iter()
            .map(contact_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let more = data.len() as i64 > limit;
        data.truncate(limit as usize);
        let next_cursor = match data.last() {
            Some(last) if more => Some(
                Keyset {
                    key: last.created_at.timestamp_millis(),
                    id: last.id.clone(),
                }
                .encode(),
            ),
            _ => None,
        };
        Ok(Json(ContactPage {
            data,
            next_cursor,
            position: scope.position,
        }))
    }

    /// Create a contact.
    ///
    /// 409 `contact_exists` (with `details.contact_id`) when a contact already has this
    /// number. A number known only from calls becomes this contact (keeping its history).
    /// Send `Idempotency-Key` to make retries safe.
    #[oai(path = "/contacts", method = "post", operation_id = "create_contact")]
    async fn create_contact(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        body: Json<NewContact>,
    ) -> Result<CreateContactResponse, ApiError> {
        let principal = principal::principal(&state, &auth).await?;
        principal.require_write()?;
        reject_unknown_parameters(req, &[])?;
        let body = body.0;
        let phone = body.phone_number.trim().to_string();
        if phone.is_empty() {
            return Err(ApiError::unprocessable(
                "invalid_input",
                "phone_number must not be empty",
            ));
        }
        check_len("name", &body.name)?;
        check_len("email", &body.email)?;
        check_len("notes", &body.notes)?;
        let (organization, _) = state.organizations.load(&principal.org()).await?;
        // An automatic contact for this number keeps its id (and so its call history).
        let automatic = Sql {
            text: "SELECT id FROM contacts WHERE organization_id = $1 AND phone_number = $2".into(),
            args: vec![Arg::Str(principal.org()), Arg::Str(phone.clone())],
        }
        .fetch_optional(&state)
        .await?
        .map(|r| r.str("id"))
        .transpose()?
        .filter(|id| !organization.contacts.contains(id));
        let id = automatic.unwrap_or_else(|| Uuid::new_v4().to_string());
        let position = execute(
            &state,
            req,
            &principal,
            OrganizationCommand::CreateContact {
                contact_id: id.clone(),
                phone_number: phone,
                name: body.name,
                email: body.email,
                notes: body.notes,
                source: ContactSource::Manual,
                actor: principal.actor(),
            },
        )
        .await?;
        Ok(CreateContactResponse::Created(Json(
            written(&state, &principal, id, position).await?,
        )))
    }

    /// One contact.
    #[oai(path = "/contacts/:id", method = "get", operation_id = "get_contact")]
    async fn get_contact(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The contact id.
        id: Path<String>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: Query<Option<Lenient<crate::http::query::position::Position>>>,
    ) -> Result<Json<ContactResponse>, ApiError> {
        let scope = begin(&state, req, &auth, &[], min_position.0).await?;
        let contact = find(&state, &scope.org(), &id.0)
            .await?
            .ok_or_else(not_found)?;
        Ok(Json(ContactResponse {
            data: contact,
            position: scope.position,
        }))
    }

    /// Edit a contact's name, email or notes (absent fields are unchanged).
    #[oai(
        path = "/contacts/:id",
        method = "patch",
        operation_id = "update_contact"
    )]
    async fn update_contact(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The contact id.
        id: Path<String>,
        body: Json<ContactChanges>,
    ) -> Result<Json<ContactWritten>, ApiError> {
        let principal = principal::principal(&state, &auth).await?;
        principal.require_write()?;
        reject_unknown_parameters(req, &[])?;
        let changes = body.0;
        check_len("name", &changes.name)?;
        check_len("email", &changes.email)?;
        check_len("notes", &changes.notes)?;
        let (adopted, mut position) = adopt(&state, req, &principal, &id.0, Some(&changes)).await?;
        if !adopted {
            position = execute(
                &state,
                req,
                &principal,
                OrganizationCommand::UpdateContact {
                    contact_id: id.0.clone(),
                    name: changes.name,
                    email: changes.email,
                    notes: changes.notes,
                    actor: principal.actor(),
                },
            )
            .await?;
        }
        Ok(Json(written(&state, &principal, id.0, position).await?))
    }

    /// Delete a contact. Its calls stay; a new call from the number revives it.
    #[oai(
        path = "/contacts/:id",
        method = "delete",
        operation_id = "delete_contact"
    )]
    async fn delete_contact(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The contact id.
        id: Path<String>,
    ) -> Result<DeleteContactResponse, ApiError> {
        let principal = principal::principal(&state, &auth).await?;
        principal.require_write()?;
        reject_unknown_parameters(req, &[])?;
        adopt(&state, req, &principal, &id.0, None).await?;
        let position = execute(
            &state,
            req,
            &principal,
            OrganizationCommand::DeleteContact {
                contact_id: id.0.clone(),
                actor: principal.actor(),
            },
        )
        .await?;
        Ok(DeleteContactResponse::Deleted(position))
    }

    /// A contact's calls, newest first (keyset-paginated like `GET /calls`).
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/contacts/:id/calls",
        method = "get",
        operation_id = "list_contact_calls"
    )]
    async fn contact_calls(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The contact id.
        id: Path<String>,
        /// Page size, 1 to 100 (default 25).
        limit: Query<Option<Lenient<crate::http::query::position::PageSize>>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: Query<Option<Lenient<crate::http::query::position::Position>>>,
    ) -> Result<Json<CallPage>, ApiError> {
        let scope: Scope = begin(&state, req, &auth, &["limit", "cursor"], min_position.0).await?;
        find(&state, &scope.org(), &id.0)
            .await?
            .ok_or_else(not_found)?;
        let limit = pagination::limit(limit.0)?;
        let cursor = pagination::keyset(cursor.0.as_deref())?;
        let filter = CallFilter {
            contact_id: Some(id.0),
            ..Default::default()
        };
        Ok(Json(
            calls::list(&state, &scope, &filter, limit, cursor).await?,
        ))
    }
}
