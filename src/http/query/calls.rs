//! `GET /api/v1/calls` (filtered, newest first, keyset-paged), `/calls/{id}`,
//! `/calls/{id}/transcript`, `/calls/{id}/recording` and `/calls/{id}/actions`.

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
use crate::http::query::principal::OrganizationHeader;
use crate::http::query::{at, begin, opt, text, time, Arg, Lenient, RowExt, Scope, Sql};
use crate::http::ApiTags;
use crate::state::AppState;

pub const STATUSES: &[&str] = &[
    "scheduled",
    "queued",
    "ringing",
    "in-progress",
    "forwarding",
    "ended",
];
pub const DIRECTIONS: &[&str] = &["inbound", "outbound", "web"];
pub const ACTION_TYPES: &[&str] = &[
    "transfer",
    "driver_callout",
    "callback_scheduled",
    "message_taken",
    "unknown",
];

/// One call, as the dashboard shows it.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Call {
    pub id: String,
    /// VAPI's id of the call.
    pub vapi_call_id: String,
    /// The telephony provider's id (Twilio call SID).
    pub provider_call_id: Option<String>,
    /// `inbound`, `outbound` or `web`.
    pub direction: String,
    /// `scheduled`, `queued`, `ringing`, `in-progress`, `forwarding` or `ended`.
    pub status: String,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub phone_number_id: Option<String>,
    pub assistant_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    /// Billable whole minutes (duration rounded up).
    pub billable_minutes: i64,
    pub ended_reason: Option<String>,
    /// Cost in USD as reported by VAPI.
    pub cost: Option<f64>,
    pub cost_breakdown: Option<serde_json::Value>,
    pub summary: Option<String>,
    pub success_evaluation: Option<String>,
    pub structured_data: Option<serde_json::Value>,
    pub call_type: Option<String>,
    pub sentiment: Option<String>,
    pub caller_name: Option<String>,
    pub action_items: Option<serde_json::Value>,
    pub has_recording: bool,
    pub hung_up: bool,
    /// True once post-call processing (analysis, notifications) finished.
    pub processed: bool,
    pub segment_count: i64,
    pub action_count: i64,
    /// Distinct action types taken during the call.
    pub action_types: Vec<String>,
}

/// A page of calls.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CallPage {
    pub data: Vec<Call>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// The log position the read models reflected.
    pub position: i64,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CallResponse {
    pub data: Call,
    pub position: i64,
    /// Present when `as_of` or `as_of_position` was asked: the call as its read model stood
    /// then (its events up to that point, projected afresh).
    pub as_of: Option<crate::http::as_of::AsOf>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TranscriptSegment {
    /// Place of the segment in the conversation (1-based; segments are ordered by their own
    /// time, whatever order their deliveries arrived in).
    pub seq: i64,
    /// `user`, `assistant`, ...
    pub role: String,
    pub text: String,
    pub at: DateTime<Utc>,
    pub seconds_from_start: Option<f64>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Transcript {
    pub call_id: String,
    pub segments: Vec<TranscriptSegment>,
    /// The running text built from the segments (`role: text` lines).
    pub full_text: String,
    /// VAPI's final transcript from the end-of-call report, when received.
    pub final_text: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TranscriptResponse {
    pub data: Transcript,
    pub position: i64,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Recording {
    /// Where to fetch it: once the post-call processing copied it into our storage, a link to
    /// our copy signed for 15 minutes (no bearer token needed); before that, the provider's.
    pub url: Option<String>,
    pub stereo_url: Option<String>,
    /// The recording is in our storage.
    pub stored: bool,
    /// When `url` stops working (a stored recording's signed link).
    pub expires_at: Option<DateTime<Utc>>,
    /// The provider's URL the copy was taken from.
    pub source_url: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RecordingResponse {
    pub data: Recording,
    pub position: i64,
}

/// A function the assistant called during the call, and what it did.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CallActionItem {
    pub tool_call_id: String,
    /// The function name as called by the assistant.
    pub name: String,
    /// `transfer`, `driver_callout`, `callback_scheduled`, `message_taken` or `unknown`.
    pub action_type: String,
    /// `completed`, `pending` or `failed`.
    pub status: String,
    pub arguments: Option<serde_json::Value>,
    /// The decoded action with its details.
    pub action: Option<serde_json::Value>,
    /// What the assistant was told.
    pub reply: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CallActionsResponse {
    pub data: Vec<CallActionItem>,
    pub position: i64,
}

const CALL_COLUMNS: &str = "id, vapi_call_id, provider_call_id, direction, status, from_number, \
     to_number, phone_number_id, assistant_id, started_at, ended_at, duration_seconds, \
     ended_reason, cost, cost_breakdown, summary, success_evaluation, structured_data, \
     call_type, sentiment, caller_name, action_items, has_recording, hung_up, processed, \
     segment_count, action_count, action_types, recording_url, stereo_recording_url";

/// The distinct action types of a call, sorted (the column lists them in arrival order).
pub fn action_types(raw: &str) -> Vec<String> {
    let mut out: Vec<String> = raw
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

pub fn call_from_row(row: &AnyRow) -> Result<Call, ApiError> {
    let duration = row.opt_f64("duration_seconds")?;
    Ok(Call {
        id: row.str("id")?,
        vapi_call_id: row.str("vapi_call_id")?,
        provider_call_id: row.opt_str("provider_call_id")?,
        direction: row.str("direction")?,
        status: row.str("status")?,
        from_number: row.opt_str("from_number")?,
        to_number: row.opt_str("to_number")?,
        phone_number_id: row.opt_str("phone_number_id")?,
        assistant_id: row.opt_str("assistant_id")?,
        started_at: at(row.i64("started_at")?),
        ended_at: row.opt_i64("ended_at")?.map(at),
        duration_seconds: duration,
        billable_minutes: projections::usage::billable_minutes(duration.unwrap_or(0.0)),
        ended_reason: row.opt_str("ended_reason")?,
        cost: row.opt_f64("cost")?,
        cost_breakdown: row.json("cost_breakdown")?,
        summary: row.opt_str("summary")?,
        success_evaluation: row.opt_str("success_evaluation")?,
        structured_data: row.json("structured_data")?,
        call_type: row.opt_str("call_type")?,
        sentiment: row.opt_str("sentiment")?,
        caller_name: row.opt_str("caller_name")?,
        action_items: row.json("action_items")?,
        has_recording: row.i64("has_recording")? != 0,
        hung_up: row.i64("hung_up")? != 0,
        processed: row.i64("processed")? != 0,
        segment_count: row.i64("segment_count")?,
        action_count: row.i64("action_count")?,
        action_types: action_types(&row.str("action_types")?),
    })
}

/// The filters of `GET /calls` (all optional, combined with AND).
#[derive(Debug, Default, Clone)]
pub struct CallFilter {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub status: Option<String>,
    pub direction: Option<String>,
    pub ended_reason: Option<String>,
    pub phone_number_id: Option<String>,
    pub assistant_id: Option<String>,
    pub caller: Option<String>,
    pub call_type: Option<String>,
    pub sentiment: Option<String>,
    pub min_duration: Option<f64>,
    pub max_duration: Option<f64>,
    pub has_recording: Option<bool>,
    pub action_type: Option<String>,
    /// Only calls counted for this contact (`/contacts/{id}/calls`).
    pub contact_id: Option<String>,
}

fn one_of(value: Option<String>, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
    let value = text(value, name)?;
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ApiError::bad_parameter(
            name,
            format!("{name} must be one of: {}", allowed.join(", ")),
        )),
        other => Ok(other),
    }
}

impl CallFilter {
    /// Appends the filter's conditions (each starting with ` AND `).
    fn apply(&self, sql: &mut Sql) {
        let eq = |sql: &mut Sql, col: &str, v: &Option<String>| {
            if let Some(v) = v {
                let p = sql.arg(Arg::Str(v.clone()));
                sql.push(&format!(" AND {col} = {p}"));
            }
        };
        eq(sql, "status", &self.status);
        eq(sql, "direction", &self.direction);
        eq(sql, "ended_reason", &self.ended_reason);
        eq(sql, "phone_number_id", &self.phone_number_id);
        eq(sql, "assistant_id", &self.assistant_id);
        eq(sql, "from_number", &self.caller);
        eq(sql, "call_type", &self.call_type);
        eq(sql, "sentiment", &self.sentiment);
        if let Some(from) = self.from {
            let p = sql.arg(Arg::I64(from));
            sql.push(&format!(" AND started_at >= {p}"));
        }
        if let Some(to) = self.to {
            let p = sql.arg(Arg::I64(to));
            sql.push(&format!(" AND started_at < {p}"));
        }
        if let Some(min) = self.min_duration {
            let p = sql.arg(Arg::F64(min));
            sql.push(&format!(" AND duration_seconds >= {p}"));
        }
        if let Some(max) = self.max_duration {
            let p = sql.arg(Arg::F64(max));
            sql.push(&format!(" AND duration_seconds <= {p}"));
        }
        if let Some(has) = self.has_recording {
            sql.push(&format!(" AND has_recording = {}", i64::from(has)));
        }
        if let Some(kind) = &self.action_type {
            let p = sql.arg(Arg::Str(format!("%,{kind},%")));
            sql.push(&format!(" AND action_types LIKE {p}"));
        }
        if let Some(contact) = &self.contact_id {
            let p = sql.arg(Arg::Str(contact.clone()));
            sql.push(&format!(
                " AND id IN (SELECT call_id FROM contact_calls WHERE organization_id = \
                 calls.organization_id AND contact_id = {p})"
            ));
        }
    }
}

/// One page of an organization's calls matching `filter`, newest first.
pub async fn list(
    state: &AppState,
    scope: &Scope,
    filter: &CallFilter,
    limit: i64,
    cursor: Option<Keyset>,
) -> Result<CallPage, ApiError> {
    let mut sql = Sql::new(format!(
        "SELECT {CALL_COLUMNS} FROM calls WHERE organization_id = "
    ));
    let org = sql.arg(Arg::Str(scope.org()));
    sql.push(&org);
    filter.apply(&mut sql);
    if let Some(c) = cursor {
        let k = sql.arg(Arg::I64(c.key));
        let id = sql.arg(Arg::Str(c.id));
        // The redundant `started_at <= k` lets the index seek straight to the cursor instead
        // of filtering every newer call (deep pages cost the same as the first).
        sql.push(&format!(
            " AND started_at <= {k} AND (started_at < {k} OR (started_at = {k} AND id < {id}))"
        ));
    }
    let n = sql.arg(Arg::I64(limit + 1));
    sql.push(&format!(" ORDER BY started_at DESC, id DESC LIMIT {n}"));
    let rows = sql.fetch_all(state).await?;
    let mut data = rows
        .iter()
        .map(call_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let more = data.len() as i64 > limit;
    data.truncate(limit as usize);
    let next_cursor = match data.last() {
        Some(last) if more => Some(
            Keyset {
                key: last.started_at.timestamp_millis(),
                id: last.id.clone(),
            }
            .encode(),
        ),
        _ => None,
    };
    Ok(CallPage {
        data,
        next_cursor,
        position: scope.position,
    })
}

/// The call `id` of the scope's organization, or 404.
pub async fn find(state: &AppState, scope: &Scope, id: &str) -> Result<AnyRow, ApiError> {
    let mut sql = Sql::new(format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = "));
    let p = sql.arg(Arg::Str(id.to_string()));
    sql.push(&p);
    let o = sql.arg(Arg::Str(scope.org()));
    sql.push(&format!(" AND organization_id = {o}"));
    sql.fetch_optional(state)
        .await?
        .ok_or_else(|| ApiError::not_found("call_not_found", "no such call"))
}

pub struct CallsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Calls")]
impl CallsApi {
    /// List calls, newest first.
    ///
    /// Keyset-paginated: pass the previous page's `next_cursor` as `cursor`. Calls that
    /// arrive while you page never shift or repeat rows. Unknown or malformed parameters are
    /// rejected with 400 naming the parameter.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/calls", method = "get", operation_id = "list_calls")]
    async fn list_calls(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// Page size, 1 to 100 (default 25).
        limit: Query<Option<Lenient<crate::http::query::position::PageSize>>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Calls started at or after this time (RFC 3339, epoch ms or YYYY-MM-DD).
        from: Query<Option<String>>,
        /// Calls started before this time (RFC 3339, epoch ms or YYYY-MM-DD).
        to: Query<Option<String>>,
        /// `scheduled`, `queued`, `ringing`, `in-progress`, `forwarding` or `ended`.
        status: Query<Option<String>>,
        /// `inbound`, `outbound` or `web`.
        direction: Query<Option<String>>,
        /// VAPI's ended reason, e.g. `customer-ended-call`.
        ended_reason: Query<Option<String>>,
        /// The phone number (id) the call came in on.
        phone_number_id: Query<Option<String>>,
        assistant_id: Query<Option<String>>,
        /// The caller's number (E.164).
        caller: Query<Option<String>>,
        /// Call type from the post-call analysis.
        call_type: Query<Option<String>>,
        /// Sentiment from the post-call analysis.
        sentiment: Query<Option<String>>,
        /// Minimum duration in seconds.
        min_duration: Query<Option<Lenient<f64>>>,
        /// Maximum duration in seconds.
        max_duration: Query<Option<Lenient<f64>>>,
        /// Only calls with (true) or without (false) a recording.
        has_recording: Query<Option<Lenient<bool>>>,
        /// Only calls during which this action was taken: `transfer`, `driver_callout`,
        /// `callback_scheduled`, `message_taken` or `unknown`.
        action_type: Query<Option<String>>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: Query<Option<Lenient<crate::http::query::position::Position>>>,
    ) -> Result<Json<CallPage>, ApiError> {
        let scope = begin(
            &state,
            req,
            &auth,
            &[
                "limit",
                "cursor",
                "from",
                "to",
                "status",
                "direction",
                "ended_reason",
                "phone_number_id",
                "assistant_id",
                "caller",
                "call_type",
                "sentiment",
                "min_duration",
                "max_duration",
                "has_recording",
                "action_type",
            ],
            min_position.0,
        )
        .await?;
        let utc = chrono_tz::UTC;
        let filter = CallFilter {
            from: time(from.0, "from", utc)?,
            to: time(to.0, "to", utc)?,
            status: one_of(status.0, "status", STATUSES)?,
            direction: one_of(direction.0, "direction", DIRECTIONS)?,
            ended_reason: text(ended_reason.0, "ended_reason")?,
            phone_number_id: text(phone_number_id.0, "phone_number_id")?,
            assistant_id: text(assistant_id.0, "assistant_id")?,
            caller: text(caller.0, "caller")?,
            call_type: text(call_type.0, "call_type")?,
            sentiment: text(sentiment.0, "sentiment")?,
            min_duration: non_negative(opt(min_duration.0, "min_duration")?, "min_duration")?,
            max_duration: non_negative(opt(max_duration.0, "max_duration")?, "max_duration")?,
            has_recording: opt(has_recording.0, "has_recording")?,
            action_type: one_of(action_type.0, "action_type", ACTION_TYPES)?,
            contact_id: None,
        };
        if let (Some(f), Some(t)) = (filter.from, filter.to) {
            if f > t {
                return Err(ApiError::bad_parameter("to", "to must not be before from"));
            }
        }
        let limit = pagination::limit(limit.0)?;
        let cursor = pagination::keyset(cursor.0.as_deref())?;
        Ok(Json(list(&state, &scope, &filter, limit, cursor).await?))
    }

    /// One call; with `as_of` (RFC 3339) or `as_of_position`, the call as it stood then
    /// (its events up to that point projected afresh, marked `as_of.historical`).
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/calls/:id", method = "get", operation_id = "get_call")]
    async fn get_call(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The call id.
        id: Path<String>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: Query<Option<Lenient<crate::http::query::position::Position>>>,
        /// The call as of this time (RFC 3339): its events recorded up to then.
        as_of: Query<Option<Lenient<chrono::DateTime<chrono::Utc>>>>,
        /// The call as of this log position: its events up to it.
        as_of_position: Query<Option<Lenient<i64>>>,
    ) -> Result<Json<CallResponse>, ApiError> {
        let params = ["as_of", "as_of_position"];
        let scope = begin(&state, req, &auth, &params, min_position.0).await?;
        let row = find(&state, &scope, &id.0).await?;
        let Some(asked) = crate::http::as_of::asked(as_of, as_of_position)? else {
            return Ok(Json(CallResponse {
                data: call_from_row(&row)?,
                position: scope.position,
                as_of: None,
            }));
        };
        let (then, last) =
            crate::app::audit::historical::call_row(&state, &id.0, CALL_COLUMNS, asked.until)
                .await?
                .ok_or_else(|| {
                    ApiError::not_found("call_not_found", "the call had not begun at that point")
                })?;
        Ok(Json(CallResponse {
            data: call_from_row(&then)?,
            position: scope.position,
            as_of: Some(asked.mark(last)),
        }))
    }

    /// A call's transcript: its segments in order, the running text and VAPI's final text.
    #[oai(
        path = "/calls/:id/transcript",
        method = "get",
        operation_id = "get_call_transcript"
    )]
    async fn get_transcript(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The call id.
        id: Path<String>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: Query<Option<Lenient<crate::http::query::position::Position>>>,
    ) -> Result<Json<TranscriptResponse>, ApiError> {
        let scope = begin(&state, req, &auth, &[], min_position.0).await?;
        find(&state, &scope, &id.0).await?;
        let mut sql = Sql::new(
            "SELECT full_text, final_text, segments FROM transcripts WHERE call_id = $1 \
             AND organization_id = $2",
        );
        sql.args = vec![Arg::Str(id.0.clone()), Arg::Str(scope.org())];
        let (full_text, final_text, segments) = match sql.fetch_optional(&state).await? {
            Some(r) => (
                r.str("full_text")?,
                r.opt_str("final_text")?,
                r.str("segments")?,
            ),
            None => (String::new(), None, "[]".to_string()),
        };
        let segments = projections::transcripts::parse_segments(&segments)
            .map_err(|err| ApiError::internal(format!("stored segments unreadable: {err}")))?
            .into_iter()
            .zip(1..)
            .map(|(s, seq)| TranscriptSegment {
                seq,
                role: s.role,
                text: s.text,
                at: at(s.at),
                seconds_from_start: s.seconds_from_start,
            })
            .collect();
        Ok(Json(TranscriptResponse {
            data: Transcript {
                call_id: id.0,
                segments,
                full_text,
                final_text,
            },
            position: scope.position,
        }))
    }

    /// A call's recording URLs; 404 `recording_not_found` when the call has none.
    #[oai(
        path = "/calls/:id/recording",
        method = "get",
        operation_id = "get_call_recording"
    )]
    async fn get_recording(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The call id.
        id: Path<String>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: Query<Option<Lenient<crate::http::query::position::Position>>>,
    ) -> Result<Json<RecordingResponse>, ApiError> {
        let scope = begin(&state, req, &auth, &[], min_position.0).await?;
        let row = find(&state, &scope, &id.0).await?;
        let url = row.opt_str("recording_url")?;
        let stereo_url = row.opt_str("stereo_recording_url")?;
        let has_recording = row.i64("has_recording")? != 0;
        if !has_recording || (url.is_none() && stereo_url.is_none()) {
            return Err(ApiError::not_found(
                "recording_not_found",
                "this call has no recording",
            ));
        }
        // The copy's key is on the Call (read models keep only what lists and filters need).
        let (call, _) = state.calls.load(&id.0).await?;
        let data = match call.recording_stored_path {
            Some(_) => {
                let expires = Utc::now().timestamp() + crate::recordings::URL_TTL_SECS;
                let query = crate::recordings::sign(&state.secrets, &id.0, expires);
                Recording {
                    url: Some(format!(
                        "{}/recordings/{}?{query}",
                        state.config.public_url.trim_end_matches('/'),
                        id.0
                    )),
                    stereo_url,
                    stored: true,
                    expires_at: DateTime::from_timestamp(expires, 0),
                    source_url: url,
                }
            }
            None => Recording {
                source_url: url.clone(),
                url,
                stereo_url,
                stored: false,
                expires_at: None,
            },
        };
        Ok(Json(RecordingResponse {
            data,
            position: scope.position,
        }))
    }

    /// The actions (function calls) taken during a call, in order.
    #[oai(
        path = "/calls/:id/actions",
        method = "get",
        operation_id = "list_call_actions"
    )]
    async fn get_actions(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The call id.
        id: Path<String>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: Query<Option<Lenient<crate::http::query::position::Position>>>,
    ) -> Result<Json<CallActionsResponse>, ApiError> {
        let scope = begin(&state, req, &auth, &[], min_position.0).await?;
        find(&state, &scope, &id.0).await?;
        let sql = Sql {
            text: "SELECT tool_call_id, name, action_type, action_data, arguments, reply, status, \
                   at FROM call_actions WHERE call_id = $1 AND organization_id = $2 \
                   ORDER BY at, tool_call_id"
                .into(),
            args: vec![Arg::Str(id.0.clone()), Arg::Str(scope.org())],
        };
        let data = sql
            .fetch_all(&state)
            .await?
            .iter()
            .map(|r| {
                Ok(CallActionItem {
                    tool_call_id: r.str("tool_call_id")?,
                    name: r.str("name")?,
                    action_type: r.str("action_type")?,
                    status: r.str("status")?,
                    arguments: r.json("arguments")?,
                    action: r.json("action_data")?,
                    reply: r.str("reply")?,
                    at: at(r.i64("at")?),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(Json(CallActionsResponse {
            data,
            position: scope.position,
        }))
    }
}

fn non_negative(v: Option<f64>, name: &str) -> Result<Option<f64>, ApiError> {
    match v {
        Some(x) if !x.is_finite() || x < 0.0 => Err(ApiError::bad_parameter(
            name,
            format!("{name} must be a non-negative number of seconds"),
        )),
        other => Ok(other),
    }
}
