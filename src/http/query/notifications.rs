//! The notifications the processes sent (or are sending) for an organization: per call and
//! organization-wide, newest first. Viewers see recipients masked.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use sqlx::any::AnyRow;

use crate::http::error::ApiError;
use crate::http::query::pagination::{self, Keyset};
use crate::http::query::principal::{rank, OrganizationHeader};
use crate::http::query::{at, begin, Arg, Lenient, RowExt, Scope, Sql};
use crate::http::ApiTags;
use crate::state::AppState;

const STATUSES: &[&str] = &[
    "queued", "sending", "sent", "retrying", "deferred", "failed", "skipped",
];

/// One SMS or email to one recipient.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NotificationItem {
    pub id: String,
    pub call_id: Option<String>,
    /// Why it was sent: `function:<name>` (during the call) or `post_call_summary`.
    pub reason: String,
    /// `sms` or `email`.
    pub channel: String,
    /// The phone number or address; masked for viewers.
    pub recipient: String,
    pub subject: Option<String>,
    /// `queued`, `sending`, `sent`, `retrying`, `deferred` (quiet hours), `failed` or
    /// `skipped`.
    pub status: String,
    /// Twilio's message sid or Resend's email id (a `sandbox`/`SM…` id in sandbox mode).
    pub provider_message_id: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NotificationPage {
    pub data: Vec<NotificationItem>,
    pub next_cursor: Option<String>,
    pub position: i64,
}

/// `+15551234567` → `+1555•••4567`; `dana@acme.test` → `d•••@acme.test`.
pub fn mask(recipient: &str) -> String {
    if let Some((user, domain)) = recipient.split_once('@') {
        let first: String = user.chars().take(1).collect();
        return format!("{first}•••@{domain}");
    }
    let chars: Vec<char> = recipient.chars().collect();
    if chars.len() <= 6 {
        return "•••".into();
    }
    let head: String = chars.iter().take(5).collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}•••{tail}")
}

fn item(row: &AnyRow, masked: bool) -> Result<NotificationItem, ApiError> {
    let recipient = row.str("recipient")?;
    Ok(NotificationItem {
        id: row.str("id")?,
        call_id: row.opt_str("call_id")?,
        reason: row.str("reason")?,
        channel: row.str("channel")?,
        recipient: if masked { mask(&recipient) } else { recipient },
        subject: row.opt_str("subject")?,
        status: row.str("status")?,
        provider_message_id: row.opt_str("provider_message_id")?,
        attempts: row.i64("attempts")?,
        last_error: row.opt_str("last_error")?,
        created_at: at(row.i64("created_at")?),
        updated_at: at(row.i64("updated_at")?),
    })
}

async fn page(
    state: &AppState,
    scope: &Scope,
    call_id: Option<String>,
    status: Option<String>,
    limit: i64,
    cursor: Option<Keyset>,
) -> Result<NotificationPage, ApiError> {
    let mut sql = Sql::new(
        "SELECT id, call_id, reason, channel, recipient, subject, status, provider_message_id, \
         attempts, last_error, created_at, updated_at FROM notifications WHERE organization_id = "
            .to_string(),
    );
    let o = sql.arg(Arg::Str(scope.org()));
    sql.push(&o);
    if let Some(call_id) = call_id {
        let c = sql.arg(Arg::Str(call_id));
        sql.push(&format!(" AND call_id = {c}"));
    }
    if let Some(status) = status {
        let s = sql.arg(Arg::Str(status));
        sql.push(&format!(" AND status = {s}"));
    }
    if let Some(cursor) = cursor {
        let k = sql.arg(Arg::I64(cursor.key));
        let k2 = sql.arg(Arg::I64(cursor.key));
        let i = sql.arg(Arg::Str(cursor.id));
        sql.push(&format!(
            " AND (created_at < {k} OR (created_at = {k2} AND id < {i}))"
        ));
    }
    let l = sql.arg(Arg::I64(limit + 1));
    sql.push(&format!(" ORDER BY created_at DESC, id DESC LIMIT {l}"));
    let masked = rank(scope.principal.role) == 0;
    let mut data = sql
        .fetch_all(state)
        .await?
        .iter()
        .map(|r| item(r, masked))
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if data.len() as i64 > limit {
        data.truncate(limit as usize);
        data.last().map(|last| {
            Keyset {
                key: last.created_at.timestamp_millis(),
                id: last.id.clone(),
            }
            .encode()
        })
    } else {
        None
    };
    Ok(NotificationPage {
        data,
        next_cursor,
        position: scope.position,
    })
}

fn status_filter(status: Option<String>) -> Result<Option<String>, ApiError> {
    match status.map(|s| s.trim().to_string()) {
        None => Ok(None),
        Some(s) if STATUSES.contains(&s.as_str()) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_parameter(
            "status",
            format!("status must be one of {}", STATUSES.join(", ")),
        )),
    }
}

pub struct NotificationsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Calls")]
impl NotificationsApi {
    /// The organization's notifications (SMS and email), newest first.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/notifications",
        method = "get",
        operation_id = "list_notifications"
    )]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// Page size, 1 to 100 (default 25).
        limit: Query<Option<Lenient<crate::http::query::position::PageSize>>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// `queued`, `sending`, `sent`, `retrying`, `deferred`, `failed` or `skipped`.
        status: Query<Option<String>>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: Query<Option<Lenient<crate::http::query::position::Position>>>,
    ) -> Result<Json<NotificationPage>, ApiError> {
        let scope = begin(
            &state,
            req,
            &auth,
            &["limit", "cursor", "status"],
            min_position.0,
        )
        .await?;
        let limit = pagination::limit(limit.0)?;
        let cursor = pagination::keyset(cursor.0.as_deref())?;
        let status = status_filter(status.0)?;
        Ok(Json(
            page(&state, &scope, None, status, limit, cursor).await?,
        ))
    }

    /// The notifications one call caused, newest first.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/calls/:id/notifications",
        method = "get",
        operation_id = "list_call_notifications"
    )]
    async fn for_call(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The call id.
        id: Path<String>,
        /// Page size, 1 to 100 (default 25).
        limit: Query<Option<Lenient<crate::http::query::position::PageSize>>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: Query<Option<Lenient<crate::http::query::position::Position>>>,
    ) -> Result<Json<NotificationPage>, ApiError> {
        let scope = begin(&state, req, &auth, &["limit", "cursor"], min_position.0).await?;
        super::calls::find(&state, &scope, &id.0).await?;
        let limit = pagination::limit(limit.0)?;
        let cursor = pagination::keyset(cursor.0.as_deref())?;
        Ok(Json(
            page(&state, &scope, Some(id.0.clone()), None, limit, cursor).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn recipients_are_masked_keeping_enough_to_recognize_them() {
        assert_eq!(mask("+15551234567"), "+1555•••4567");
        assert_eq!(mask("dana@acme.test"), "d•••@acme.test");
        assert_eq!(mask("12345"), "•••");
    }
}
