//! `GET /api/v1/calls/search?q=`: ranked full-text search over call transcripts, with
//! highlighted snippets.
//!
//! Reads `transcript_search` (migration 0004; written by the transcripts projector):
//! - PostgreSQL: `websearch_to_tsquery('english', q)` against the GIN index on the stored
//!   `tsv` column (migration 0008), ranked by `ts_rank`, snippets from `ts_headline`.
//! - SQLite: an FTS5 table (porter stemming), ranked by `bm25`, snippets from `snippet()`.
//!   The query's words are quoted, so FTS5 operators in user input are taken literally;
//!   every word must match (AND).
//!
//! Ranks are comparable within one backend only (higher is better). Pages use an offset
//! cursor: a ranked order has no stable key.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use eventlog::Backend;
use poem::web::Data;
use poem::Request;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::http::error::ApiError;
use crate::http::query::pagination;
use crate::http::query::principal::OrganizationHeader;
use crate::http::query::{at, begin, Arg, Lenient, RowExt, Sql};
use crate::http::ApiTags;
use crate::state::AppState;

pub const MAX_QUERY_CHARS: usize = 200;

/// One matching call.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SearchHit {
    pub call_id: String,
    pub started_at: Option<DateTime<Utc>>,
    pub from_number: Option<String>,
    pub summary: Option<String>,
    /// Relevance; higher is better (comparable within one response).
    pub rank: f64,
    /// An excerpt of the transcript with the matching words wrapped in `<mark>` and
    /// `</mark>`. The rest is the transcript's raw text: escape it before rendering as HTML.
    pub snippet: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SearchPage {
    pub data: Vec<SearchHit>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
    pub position: i64,
}

/// The FTS5 query for free text: each word quoted (operators taken literally), all required.
pub fn fts5_query(q: &str) -> String {
    q.split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

pub struct SearchApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Calls")]
impl SearchApi {
    /// Full-text search over call transcripts.
    ///
    /// Ranked (best first), with highlighted snippets. `q` is free text: every word must
    /// appear (stemmed, so `calling` finds `called`).
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/calls/search", method = "get", operation_id = "search_calls")]
    async fn search(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The words to search for (required, at most 200 characters).
        q: Query<Option<String>>,
        /// Page size, 1 to 100 (default 25).
        limit: Query<Option<Lenient<crate::http::query::position::PageSize>>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: Query<Option<Lenient<crate::http::query::position::Position>>>,
    ) -> Result<Json<SearchPage>, ApiError> {
        let scope = begin(
            &state,
            req,
            &auth,
            &["q", "limit", "cursor"],
            min_position.0,
        )
        .await?;
        let q = q.0.map(|q| q.trim().to_string()).unwrap_or_default();
        if q.is_empty()
            || q.split_whitespace()
                .all(|w| w.chars().all(|c| !c.is_alphanumeric()))
        {
            return Err(ApiError::bad_parameter(
                "q",
                "q must contain at least one word",
            ));
        }
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(ApiError::bad_parameter(
                "q",
                format!("q may be at most {MAX_QUERY_CHARS} characters"),
            ));
        }
        let limit = pagination::limit(limit.0)?;
        let offset = pagination::decode_offset(cursor.0.as_deref())?;
        let sql = match state.store.backend() {
            Backend::Postgres => Sql {
                // Rank and page on the stored tsvector first; highlight only the page (a
                // headline per match would cost more than the search itself).
                text: "SELECT r.call_id AS call_id, c.started_at AS started_at, \
                       c.from_number AS from_number, c.summary AS summary, r.rank AS rank, \
                       ts_headline('english', s.body, q, 'StartSel=<mark>, \
                       StopSel=</mark>, MaxWords=30, MinWords=10, MaxFragments=2') AS snippet \
                       FROM (SELECT s.call_id AS call_id, \
                             CAST(ts_rank(s.tsv, q) AS DOUBLE PRECISION) AS rank \
                             FROM transcript_search s \
                             CROSS JOIN websearch_to_tsquery('english', $1) q \
                             WHERE s.organization_id = $2 AND s.tsv @@ q \
                             ORDER BY rank DESC, s.call_id DESC LIMIT $3 OFFSET $4) r \
                       JOIN transcript_search s ON s.call_id = r.call_id \
                       CROSS JOIN websearch_to_tsquery('english', $1) q \
                       LEFT JOIN calls c ON c.id = r.call_id \
                       ORDER BY r.rank DESC, r.call_id DESC"
                    .into(),
                args: vec![
                    Arg::Str(q.clone()),
                    Arg::Str(scope.org()),
                    Arg::I64(limit + 1),
                    Arg::I64(offset),
                ],
            },
            Backend::Sqlite => Sql {
                text: "SELECT transcript_search.call_id AS call_id, c.started_at AS started_at, \
                       c.from_number AS from_number, c.summary AS summary, \
                       -bm25(transcript_search) AS rank, \
                       snippet(transcript_search, 2, '<mark>', '</mark>', '…', 24) AS snippet \
                       FROM transcript_search LEFT JOIN calls c \
                       ON c.id = transcript_search.call_id \
                       WHERE transcript_search MATCH $1 \
                       AND transcript_search.organization_id = $2 \
                       ORDER BY rank DESC, call_id DESC LIMIT $3 OFFSET $4"
                    .into(),
                args: vec![
                    Arg::Str(fts5_query(&q)),
                    Arg::Str(scope.org()),
                    Arg::I64(limit + 1),
                    Arg::I64(offset),
                ],
            },
        };
        let rows = sql.fetch_all(&state).await?;
        let mut data = rows
            .iter()
            .map(|r| {
                Ok(SearchHit {
                    call_id: r.str("call_id")?,
                    started_at: r.opt_i64("started_at")?.map(at),
                    from_number: r.opt_str("from_number")?,
                    summary: r.opt_str("summary")?,
                    rank: r.opt_f64("rank")?.unwrap_or(0.0),
                    snippet: r.opt_str("snippet")?.unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let more = data.len() as i64 > limit;
        data.truncate(limit as usize);
        Ok(Json(SearchPage {
            next_cursor: more.then(|| pagination::encode_offset(offset + limit)),
            data,
            position: scope.position,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::fts5_query;

    #[test]
    fn fts5_operators_in_user_input_are_quoted() {
        assert_eq!(fts5_query("sick OR \"x"), "\"sick\" \"OR\" \"\"\"x\"");
    }
}
