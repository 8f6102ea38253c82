//! `GET /api/v1/calls/stats`: totals, a per-day series in the caller's time zone, and
//! breakdowns, for calls started in `[from, to)`.
//!
//! The aggregation runs in Rust over the range's `(started_at, duration, cost, ...)` rows: one
//! indexed range scan (`calls_org_started`), the same on both backends, and day buckets in any
//! IANA time zone without per-backend date SQL.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{Duration as ChronoDuration, NaiveDate, Utc};
use chrono_tz::Tz;
use poem::web::Data;
use poem::Request;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::http::error::ApiError;
use crate::http::query::calls::action_types;
use crate::http::query::principal::OrganizationHeader;
use crate::http::query::{at, begin, time, Arg, Lenient, RowExt, Sql};
use crate::http::ApiTags;
use crate::state::AppState;

/// Longest range a stats request may cover.
pub const MAX_DAYS: i64 = 400;
/// Default range: the last 30 days.
pub const DEFAULT_DAYS: i64 = 30;

/// One day of the series (a calendar day in the requested time zone).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DailyCallStats {
    /// `YYYY-MM-DD` in the requested time zone.
    pub date: String,
    pub calls: i64,
    pub duration_seconds: f64,
    pub billable_minutes: i64,
    pub cost: f64,
}

/// How many calls have one value of a dimension (`key` absent: not set on those calls).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Bucket {
    pub key: Option<String>,
    pub count: i64,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CallStats {
    pub from: chrono::DateTime<Utc>,
    pub to: chrono::DateTime<Utc>,
    /// The IANA time zone the series' days are in.
    pub tz: String,
    pub total_calls: i64,
    pub ended_calls: i64,
    pub total_duration_seconds: f64,
    /// Over calls with a known duration; absent when there are none.
    pub average_duration_seconds: Option<f64>,
    /// Sum over calls of the duration rounded up to whole minutes.
    pub billable_minutes: i64,
    /// USD, as reported by VAPI.
    pub total_cost: f64,
    /// Every day of the range, including days without calls.
    pub series: Vec<DailyCallStats>,
    pub by_status: Vec<Bucket>,
    pub by_direction: Vec<Bucket>,
    pub by_ended_reason: Vec<Bucket>,
    pub by_call_type: Vec<Bucket>,
    pub by_sentiment: Vec<Bucket>,
    /// Calls during which each action type was taken (a call counts once per type).
    pub by_action_type: Vec<Bucket>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CallStatsResponse {
    pub data: CallStats,
    pub position: i64,
}

#[derive(Default)]
struct Counter(HashMap<Option<String>, i64>);

impl Counter {
    fn add(&mut self, key: Option<String>) {
        *self.0.entry(key).or_default() += 1;
    }

    fn buckets(self) -> Vec<Bucket> {
        let mut out: Vec<Bucket> = self
            .0
            .into_iter()
            .map(|(key, count)| Bucket { key, count })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        out
    }
}

pub fn parse_tz(value: Option<String>) -> Result<Tz, ApiError> {
    match value {
        None => Ok(chrono_tz::UTC),
        Some(v) => v.trim().parse::<Tz>().map_err(|_| {
            ApiError::bad_parameter("tz", "tz must be an IANA time zone, e.g. Europe/Berlin")
        }),
    }
}

fn local_date(ms: i64, tz: Tz) -> NaiveDate {
    at(ms).with_timezone(&tz).date_naive()
}

/// Resolves `[from, to)` with defaults and limits.
pub fn range(
    from: Option<String>,
    to: Option<String>,
    tz: Tz,
    max_days: i64,
) -> Result<(i64, i64), ApiError> {
    let to_ms = time(to, "to", tz)?.unwrap_or_else(|| Utc::now().timestamp_millis());
    let from_ms = match time(from, "from", tz)? {
        Some(f) => f,
        None => to_ms - ChronoDuration::days(DEFAULT_DAYS).num_milliseconds(),
    };
    if from_ms > to_ms {
        return Err(ApiError::bad_parameter("to", "to must not be before from"));
    }
    if to_ms - from_ms > ChronoDuration::days(max_days).num_milliseconds() {
        return Err(ApiError::bad_parameter(
            "from",
            format!("the range may cover at most {max_days} days"),
        ));
    }
    Ok((from_ms, to_ms))
}

/// Every local date touched by `[from, to)`.
pub fn days(from: i64, to: i64, tz: Tz) -> Vec<NaiveDate> {
    let first = local_date(from, tz);
    let last = local_date((to - 1).max(from), tz);
    let mut out = Vec::new();
    let mut d = first;
    while d <= last {
        out.push(d);
        match d.succ_opt() {
            Some(n) => d = n,
            None => break,
        }
    }
    out
}

pub struct StatsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Calls")]
impl StatsApi {
    /// Call statistics for a time range.
    ///
    /// Counts, total and average duration, billable minutes and cost for calls started in
    /// `[from, to)` (default: the last 30 days, at most 400), a per-day series in time zone
    /// `tz`, and breakdowns by status, direction, ended reason, call type, sentiment and
    /// action type.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/calls/stats", method = "get", operation_id = "get_call_stats")]
    async fn stats(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// Start of the range (RFC 3339, epoch ms, or YYYY-MM-DD = midnight in `tz`).
        from: Query<Option<String>>,
        /// End of the range, exclusive (default now).
        to: Query<Option<String>>,
        /// IANA time zone for the daily series (default UTC), e.g. `America/Chicago`.
        tz: Query<Option<String>>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: Query<Option<Lenient<crate::http::query::position::Position>>>,
    ) -> Result<Json<CallStatsResponse>, ApiError> {
        let scope = begin(&state, req, &auth, &["from", "to", "tz"], min_position.0).await?;
        let zone = parse_tz(tz.0)?;
        let (from_ms, to_ms) = range(from.0, to.0, zone, MAX_DAYS)?;
        let sql = Sql {
            text: "SELECT started_at, duration_seconds, cost, status, direction, ended_reason, \
                   call_type, sentiment, action_types FROM calls WHERE organization_id = $1 \
                   AND started_at >= $2 AND started_at < $3"
                .into(),
            args: vec![Arg::Str(scope.org()), Arg::I64(from_ms), Arg::I64(to_ms)],
        };
        let rows = sql.fetch_all(&state).await?;
        let mut series: BTreeMap<NaiveDate, DailyCallStats> = days(from_ms, to_ms, zone)
            .into_iter()
            .map(|d| {
                (
                    d,
                    DailyCallStats {
                        date: d.format("%Y-%m-%d").to_string(),
                        calls: 0,
                        duration_seconds: 0.0,
                        billable_minutes: 0,
                        cost: 0.0,
                    },
                )
            })
            .collect();
        let (mut total, mut ended, mut with_duration) = (0i64, 0i64, 0i64);
        let (mut seconds, mut cost, mut minutes) = (0f64, 0f64, 0i64);
        let mut by_status = Counter::default();
        let mut by_direction = Counter::default();
        let mut by_reason = Counter::default();
        let mut by_type = Counter::default();
        let mut by_sentiment = Counter::default();
        let mut by_action = Counter::default();
        for r in &rows {
            let started = r.i64("started_at")?;
            let duration = r.opt_f64("duration_seconds")?;
            let call_cost = r.opt_f64("cost")?.unwrap_or(0.0);
            let status = r.str("status")?;
            let billable = projections::usage::billable_minutes(duration.unwrap_or(0.0));
            total += 1;
            if status == "ended" {
                ended += 1;
            }
            if let Some(d) = duration {
                with_duration += 1;
                seconds += d;
            }
            minutes += billable;
            cost += call_cost;
            if let Some(day) = series.get_mut(&local_date(started, zone)) {
                day.calls += 1;
                day.duration_seconds += duration.unwrap_or(0.0);
                day.billable_minutes += billable;
                day.cost += call_cost;
            }
            by_status.add(Some(status));
            by_direction.add(Some(r.str("direction")?));
            by_reason.add(r.opt_str("ended_reason")?);
            by_type.add(r.opt_str("call_type")?);
            by_sentiment.add(r.opt_str("sentiment")?);
            for kind in action_types(&r.str("action_types")?) {
                by_action.add(Some(kind));
            }
        }
        Ok(Json(CallStatsResponse {
            data: CallStats {
                from: at(from_ms),
                to: at(to_ms),
                tz: zone.name().to_string(),
                total_calls: total,
                ended_calls: ended,
                total_duration_seconds: seconds,
                average_duration_seconds: (with_duration > 0)
                    .then(|| seconds / with_duration as f64),
                billable_minutes: minutes,
                total_cost: cost,
                series: series.into_values().collect(),
                by_status: by_status.buckets(),
                by_direction: by_direction.buckets(),
                by_ended_reason: by_reason.buckets(),
                by_call_type: by_type.buckets(),
                by_sentiment: by_sentiment.buckets(),
                by_action_type: by_action.buckets(),
            },
            position: scope.position,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn days_follow_the_time_zone() {
        // 2024-07-15T02:00Z is still July 14 in Chicago.
        let from = Utc
            .with_ymd_and_hms(2024, 7, 15, 2, 0, 0)
            .single()
            .map(|t| t.timestamp_millis())
            .unwrap_or_default();
        let to = from + 3_600_000;
        let chicago: Tz = "America/Chicago".parse().unwrap_or(chrono_tz::UTC);
        let d = days(from, to, chicago);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].to_string(), "2024-07-14");
        assert_eq!(days(from, to, chrono_tz::UTC)[0].to_string(), "2024-07-15");
    }
}
