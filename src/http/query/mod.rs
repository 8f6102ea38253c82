//! The dashboard query API under `/api/v1`: calls, transcripts, stats, search, contacts and
//! billing, served from the read models the projectors build.
//!
//! Every handler starts with [`begin`]: it resolves the [`principal::Principal`] (the
//! organization the request acts for), rejects query parameters the operation does not know
//! (400 naming the parameter), and waits for `min_position` / `X-Min-Position`
//! (read-your-writes; 503 `not_caught_up` after 5 s). Every response carries `position`: the
//! log position every read model reflected when the query ran.
//!
//! Parameters are parsed by us, not by poem-openapi, so that every malformed value answers 400
//! in our error shape naming the parameter ([`Lenient`]).

pub mod audit;
pub mod billing;
pub mod calls;
pub mod contacts;
pub mod live_feed;
pub mod notifications;
pub mod pagination;
pub mod position;
pub mod principal;
pub mod processing;
pub mod search;
pub mod stats;
pub mod webhook_deliveries;

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use poem::Request;
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromParameter, ParseResult, Type};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use crate::http::error::ApiError;
use crate::state::AppState;
use principal::{OrganizationHeader, Principal};

/// How long a query waits for `min_position` before answering 503.
pub const CONSISTENCY_WAIT: Duration = Duration::from_secs(5);

/// Every query API of this module, for [`crate::http::Api`].
pub type QueryApi = (
    calls::CallsApi,
    stats::StatsApi,
    search::SearchApi,
    contacts::ContactsApi,
    billing::BillingApi,
    notifications::NotificationsApi,
    webhook_deliveries::WebhookDeliveriesApi,
    processing::ProcessingApi,
    live_feed::LiveFeedApi,
    audit::AuditApi,
);

pub fn api() -> QueryApi {
    (
        calls::CallsApi,
        stats::StatsApi,
        search::SearchApi,
        contacts::ContactsApi,
        billing::BillingApi,
        notifications::NotificationsApi,
        webhook_deliveries::WebhookDeliveriesApi,
        processing::ProcessingApi,
        live_feed::LiveFeedApi,
        audit::AuditApi,
    )
}

/// A parameter value documented as `T` but parsed by us: a malformed value does not make
/// poem-openapi reject the request with its own error; the handler reports it (400 naming
/// the parameter) via [`Lenient::get`].
pub struct Lenient<T>(pub Result<T, String>);

impl<T> Lenient<T> {
    pub fn get(self, name: &str) -> Result<T, ApiError> {
        self.0
            .map_err(|reason| ApiError::bad_parameter(name, format!("invalid {name}: {reason}")))
    }
}

impl<T: Type> Type for Lenient<T> {
    const IS_REQUIRED: bool = T::IS_REQUIRED;
    type RawValueType = T::RawValueType;
    type RawElementValueType = T::RawElementValueType;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry)
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        self.0.as_ref().ok().and_then(|v| v.as_raw_value())
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        match &self.0 {
            Ok(v) => v.raw_element_iter(),
            Err(_) => Box::new(std::iter::empty()),
        }
    }
}

impl<T: ParseFromParameter> ParseFromParameter for Lenient<T> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Lenient(
            T::parse_from_parameter(value).map_err(|e| e.into_message()),
        ))
    }
}

/// Unwraps an optional lenient parameter.
pub fn opt<T>(value: Option<Lenient<T>>, name: &str) -> Result<Option<T>, ApiError> {
    value.map(|v| v.get(name)).transpose()
}

/// What every query handler knows after [`begin`].
pub struct Scope {
    pub principal: Principal,
    /// The log position every read model reflected before the query ran.
    pub position: i64,
}

impl Scope {
    pub fn org(&self) -> String {
        self.principal.org()
    }
}

/// Authenticates, checks the query string against `allowed` (plus `min_position`), waits for
/// the requested position and notes the position the answer will reflect.
pub async fn begin(
    state: &AppState,
    req: &Request,
    credential: &OrganizationHeader,
    allowed: &[&str],
    min_position: Option<Lenient<position::Position>>,
) -> Result<Scope, ApiError> {
    let principal = principal::principal(state, credential).await?;
    reject_unknown_parameters(req, allowed)?;
    let mut wanted = opt(min_position, "min_position")?.map(|p| p.0);
    if let Some(header) = req.headers().get("x-min-position") {
        let parsed = header
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .ok_or_else(|| {
                ApiError::bad_parameter("X-Min-Position", "X-Min-Position must be an integer")
            })?;
        wanted = Some(wanted.map_or(parsed, |w| w.max(parsed)));
    }
    if let Some(p) = wanted {
        if p < 0 {
            return Err(ApiError::bad_parameter(
                "min_position",
                "min_position must not be negative",
            ));
        }
        wait_for(state, p).await?;
    }
    Ok(Scope {
        principal,
        position: state.read_model_position(),
    })
}

/// Waits until every read model reflects `position`; 503 `not_caught_up` otherwise. A
/// position no write has reached (beyond the log's head) is 409 `position_beyond_log`:
/// waiting would not help, it was never an answer of ours.
pub async fn wait_for(state: &AppState, position: i64) -> Result<(), ApiError> {
    if state.wait_for_position(position, CONSISTENCY_WAIT).await? {
        return Ok(());
    }
    // Only on the way out: the head is read when the wait failed, not on every query.
    let head = state.store.head().await?;
    if position > head {
        return Err(ApiError::conflict(
            "position_beyond_log",
            format!("min_position {position} is beyond the log's head ({head}): no write has reached it"),
        ));
    }
    Err(ApiError::unavailable(
        "not_caught_up",
        format!("the read models have not reached position {position} yet; retry shortly"),
    ))
}

/// 400 naming the first query parameter the operation does not know.
pub fn reject_unknown_parameters(req: &Request, allowed: &[&str]) -> Result<(), ApiError> {
    let Some(query) = req.uri().query() else {
        return Ok(());
    };
    for (name, _) in url::form_urlencoded::parse(query.as_bytes()) {
        if name != "min_position" && !allowed.contains(&name.as_ref()) {
            return Err(ApiError::bad_parameter(
                &name,
                format!("unknown query parameter `{name}`"),
            ));
        }
    }
    Ok(())
}

/// A non-empty string parameter.
/// The longest free-text query parameter (searches): SQLite refuses LIKE patterns past
/// 50,000 bytes, and no search needs more than this.
pub const MAX_TEXT_PARAMETER: usize = 500;

pub fn text(value: Option<String>, name: &str) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.trim().is_empty() => Err(ApiError::bad_parameter(
            name,
            format!("{name} must not be empty"),
        )),
        Some(v) if v.chars().count() > MAX_TEXT_PARAMETER => Err(ApiError::bad_parameter(
            name,
            format!("{name} must be at most {MAX_TEXT_PARAMETER} characters"),
        )),
        other => Ok(other.map(|v| v.trim().to_string())),
    }
}

/// A point in time given as RFC 3339, epoch milliseconds or a date (`YYYY-MM-DD`, midnight in
/// `tz`). Returns epoch milliseconds.
pub fn parse_time(name: &str, value: &str, tz: chrono_tz::Tz) -> Result<i64, ApiError> {
    let value = value.trim();
    let bad = || {
        ApiError::bad_parameter(
            name,
            format!("{name} must be an RFC 3339 timestamp, epoch milliseconds or YYYY-MM-DD"),
        )
    };
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<i64>().map_err(|_| bad());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let midnight = d.and_hms_opt(0, 0, 0).ok_or_else(bad)?;
        return tz
            .from_local_datetime(&midnight)
            .earliest()
            .map(|t| t.timestamp_millis())
            .ok_or_else(bad);
    }
    Err(bad())
}

/// An optional time parameter.
pub fn time(value: Option<String>, name: &str, tz: chrono_tz::Tz) -> Result<Option<i64>, ApiError> {
    value.map(|v| parse_time(name, &v, tz)).transpose()
}

/// Epoch milliseconds as a timestamp (out-of-range values clamp to the epoch).
pub fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A value bound to a dynamically built statement.
#[derive(Debug, Clone)]
pub enum Arg {
    I64(i64),
    F64(f64),
    Str(String),
}

/// A statement built piece by piece, with `$n` placeholders (valid on both backends).
#[derive(Debug, Default)]
pub struct Sql {
    pub text: String,
    pub args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            args: Vec::new(),
        }
    }

    /// Adds a bound value and returns its placeholder.
    pub fn arg(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    pub fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    pub fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut q = sqlx::query(&self.text);
        for arg in &self.args {
            q = match arg {
                Arg::I64(v) => q.bind(*v),
                Arg::F64(v) => q.bind(*v),
                Arg::Str(v) => q.bind(v.clone()),
            };
        }
        q
    }

    pub async fn fetch_all(&self, state: &AppState) -> Result<Vec<AnyRow>, ApiError> {
        Ok(self.query().fetch_all(state.store.pool()).await?)
    }

    pub async fn fetch_optional(&self, state: &AppState) -> Result<Option<AnyRow>, ApiError> {
        Ok(self.query().fetch_optional(state.store.pool()).await?)
    }
}

/// Column readers that turn decoding problems into 500s (logged once).
pub trait RowExt {
    fn str(&self, col: &str) -> Result<String, ApiError>;
    fn opt_str(&self, col: &str) -> Result<Option<String>, ApiError>;
    fn i64(&self, col: &str) -> Result<i64, ApiError>;
    fn opt_i64(&self, col: &str) -> Result<Option<i64>, ApiError>;
    fn opt_f64(&self, col: &str) -> Result<Option<f64>, ApiError>;
    /// A JSON text column, parsed (`None` when NULL or unparsable).
    fn json(&self, col: &str) -> Result<Option<serde_json::Value>, ApiError>;
}

impl RowExt for AnyRow {
    fn str(&self, col: &str) -> Result<String, ApiError> {
        Ok(self.try_get::<String, _>(col)?)
    }
    fn opt_str(&self, col: &str) -> Result<Option<String>, ApiError> {
        Ok(self.try_get::<Option<String>, _>(col)?)
    }
    fn i64(&self, col: &str) -> Result<i64, ApiError> {
        Ok(self.try_get::<i64, _>(col)?)
    }
    fn opt_i64(&self, col: &str) -> Result<Option<i64>, ApiError> {
        Ok(self.try_get::<Option<i64>, _>(col)?)
    }
    fn opt_f64(&self, col: &str) -> Result<Option<f64>, ApiError> {
        Ok(self.try_get::<Option<f64>, _>(col)?)
    }
    fn json(&self, col: &str) -> Result<Option<serde_json::Value>, ApiError> {
        Ok(self
            .opt_str(col)?
            .and_then(|t| serde_json::from_str(&t).ok()))
    }
}

/// `LIKE` pattern matching `needle` anywhere (lowercased; `%`, `_` and `\` escaped; use with
/// `ESCAPE '\'`).
pub fn like_pattern(needle: &str) -> String {
    let mut out = String::from("%");
    for c in needle.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_from_rfc3339_epoch_millis_and_dates() {
        let utc = chrono_tz::UTC;
        assert_eq!(
            parse_time("from", "1721000000000", utc).ok(),
            Some(1_721_000_000_000)
        );
        assert_eq!(
            parse_time("from", "2024-07-15T10:00:00Z", utc).ok(),
            Some(1_721_037_600_000)
        );
        assert_eq!(
            parse_time("from", "2024-07-15", chrono_tz::Europe::Berlin).ok(),
            Some(1_720_994_400_000)
        );
        let err = parse_time("to", "yesterday", utc)
            .err()
            .map(|e| e.detail().clone());
        assert_eq!(
            err.and_then(|d| d.details),
            Some(serde_json::json!({"parameter": "to"}))
        );
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("A_b%"), "%a\\_b\\%%");
    }

    #[test]
    fn the_committed_openapi_document_matches_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let generated = crate::http::openapi_json();
        assert!(
            committed.trim_end() == generated.trim_end(),
            "openapi/openapi.json is out of date; regenerate it with \
             `cargo run -- openapi > openapi/openapi.json`"
        );
    }
}
