//! `GET /api/v1/billing`, `/billing/usage` and `/billing/invoices`.
//!
//! With a subscription, the period is its metering period and the used minutes are the
//! minutes metered on it (`billing_period_usage`, kept by the usage-metering process as calls
//! end); without one, the current UTC month from `usage_daily` (per UTC day, whole minutes
//! per call rounded up). Status and plan come from `billing_subscriptions` (Stripe's period
//! bounds are epoch SECONDS there; they are converted here).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use sqlx::any::AnyRow;

use crate::http::error::ApiError;
use crate::http::query::pagination::{self, Keyset};
use crate::http::query::principal::OrganizationHeader;
use crate::http::query::stats::{days, range};
use crate::http::query::{at, begin, Arg, Lenient, RowExt, Scope, Sql};
use crate::http::ApiTags;
use crate::state::AppState;

/// Stripe timestamps are epoch seconds; anything this large is already milliseconds.
fn stripe_ms(value: i64) -> i64 {
    if value.abs() < 100_000_000_000 {
        value.saturating_mul(1000)
    } else {
        value
    }
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct BillingOverview {
    pub subscription_id: Option<String>,
    /// Stripe's subscription status (`active`, `past_due`, `canceled`, ...) or `none`.
    pub status: String,
    pub plan: Option<String>,
    pub cancel_at_period_end: bool,
    /// The current billing period (the current UTC month when there is no subscription).
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// Minutes included in the plan per period.
    pub included_minutes: Option<i64>,
    /// Billable minutes of the period's calls (whole minutes per call, rounded up).
    pub used_minutes: i64,
    /// Overage minutes already reported to Stripe (as Billing Meter events) this period.
    pub reported_minutes: i64,
    /// Minutes beyond the included ones so far.
    pub overage_minutes: i64,
    /// What the overage costs at the plan's rate, in cents.
    pub overage_cost_cents: Option<i64>,
    /// Included minutes left (absent without a plan).
    pub remaining_minutes: Option<i64>,
    /// Usage alerts sent this period (percent of the included minutes: 80, 100).
    pub thresholds_reached: Vec<i64>,
    pub calls: i64,
    /// What VAPI charged for the period's calls, in USD.
    pub cost: f64,
    /// The last payment Stripe could not collect, until an invoice is paid.
    pub payment_failed: Option<PaymentFailure>,
}

#[derive(Debug, Object)]
pub struct PaymentFailure {
    pub invoice_id: String,
    pub amount_due_cents: i64,
    pub currency: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct BillingResponse {
    pub data: BillingOverview,
    pub position: i64,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct UsageDay {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    pub calls: i64,
    pub seconds: f64,
    pub minutes: i64,
    pub cost: f64,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Usage {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Every UTC day of the range, including days without calls.
    pub days: Vec<UsageDay>,
    pub total_calls: i64,
    pub total_minutes: i64,
    pub total_cost: f64,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct UsageResponse {
    pub data: Usage,
    pub position: i64,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Invoice {
    pub id: String,
    pub subscription_id: String,
    /// `paid` or `payment_failed`.
    pub status: String,
    pub amount_cents: i64,
    pub currency: String,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub hosted_invoice_url: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct InvoicePage {
    pub data: Vec<Invoice>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
    pub position: i64,
}

/// The organization's current subscription row (live ones first, then the latest).
async fn subscription(state: &AppState, scope: &Scope) -> Result<Option<AnyRow>, ApiError> {
    Sql {
        text: "SELECT subscription_id, status, plan, price_id, included_minutes, \
               current_period_start, current_period_end, cancel_at_period_end, \
               metering_period_start, metering_period_end, payment_failed_invoice, \
               payment_failed_amount_cents, payment_failed_currency, payment_failed_at FROM \
               billing_subscriptions WHERE organization_id = $1 ORDER BY CASE WHEN status IN \
               ('active', 'trialing', 'past_due') THEN 0 ELSE 1 END, updated_at DESC, \
               subscription_id DESC LIMIT 1"
            .into(),
        args: vec![Arg::Str(scope.org())],
    }
    .fetch_optional(state)
    .await
}

fn month_bounds(now: DateTime<Utc>) -> (i64, i64) {
    let first = NaiveDate::from_ymd_opt(now.year(), now.month(), 1).unwrap_or_default();
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first);
    let ms = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .unwrap_or_default()
    };
    (ms(first), ms(next))
}

/// The current period in epoch ms: the subscription's metering period, else Stripe's, else
/// the current UTC month.
fn period(sub: Option<&AnyRow>) -> Result<(i64, i64), ApiError> {
    if let Some(r) = sub {
        if let (Some(s), Some(e)) = (
            r.opt_i64("metering_period_start")?,
            r.opt_i64("metering_period_end")?,
        ) {
            return Ok((stripe_ms(s), stripe_ms(e)));
        }
        if let (Some(s), Some(e)) = (
            r.opt_i64("current_period_start")?,
            r.opt_i64("current_period_end")?,
        ) {
            return Ok((stripe_ms(s), stripe_ms(e)));
        }
    }
    Ok(month_bounds(Utc::now()))
}

/// `usage_daily` rows of the UTC days touching `[from, to)`.
async fn usage_rows(
    state: &AppState,
    scope: &Scope,
    from: i64,
    to: i64,
) -> Result<BTreeMap<String, UsageDay>, ApiError> {
    let dates = days(from, to, chrono_tz::UTC);
    let mut out: BTreeMap<String, UsageDay> = dates
        .iter()
        .map(|d| {
            let date = d.format("%Y-%m-%d").to_string();
            (
                date.clone(),
                UsageDay {
                    date,
                    calls: 0,
                    seconds: 0.0,
                    minutes: 0,
                    cost: 0.0,
                },
            )
        })
        .collect();
    let (Some(first), Some(last)) = (out.keys().next().cloned(), out.keys().last().cloned()) else {
        return Ok(out);
    };
    let rows = Sql {
        text: "SELECT day, calls, seconds, minutes, cost FROM usage_daily \
               WHERE organization_id = $1 AND day >= $2 AND day <= $3"
            .into(),
        args: vec![Arg::Str(scope.org()), Arg::Str(first), Arg::Str(last)],
    }
    .fetch_all(state)
    .await?;
    for r in rows {
        let day = r.str("day")?;
        if let Some(d) = out.get_mut(&day) {
            d.calls = r.i64("calls")?;
            d.seconds = r.opt_f64("seconds")?.unwrap_or(0.0);
            d.minutes = r.i64("minutes")?;
            d.cost = r.opt_f64("cost")?.unwrap_or(0.0);
        }
    }
    Ok(out)
}

/// The metered usage of the subscription's current metering period.
struct Metered {
    calls: i64,
    minutes: i64,
    reported: i64,
    thresholds: Vec<i64>,
}

async fn metered_usage(
    state: &AppState,
    sub: Option<&AnyRow>,
) -> Result<Option<Metered>, ApiError> {
    let Some(r) = sub else { return Ok(None) };
    let Some(start) = r.opt_i64("metering_period_start")? else {
        return Ok(None);
    };
    let row = Sql {
        text: "SELECT calls, minutes, reported_minutes, thresholds FROM billing_period_usage \
               WHERE subscription_id = $1 AND period_start = $2"
            .into(),
        args: vec![Arg::Str(r.str("subscription_id")?), Arg::I64(start)],
    }
    .fetch_optional(state)
    .await?;
    let Some(row) = row else {
        return Ok(Some(Metered {
            calls: 0,
            minutes: 0,
            reported: 0,
            thresholds: Vec::new(),
        }));
    };
    Ok(Some(Metered {
        calls: row.i64("calls")?,
        minutes: row.i64("minutes")?,
        reported: row.i64("reported_minutes")?,
        thresholds: row
            .str("thresholds")?
            .split(',')
            .filter_map(|t| t.parse().ok())
            .collect(),
    }))
}

fn payment_failure(r: &AnyRow) -> Result<Option<PaymentFailure>, ApiError> {
    let (Some(invoice_id), Some(at_ms)) = (
        r.opt_str("payment_failed_invoice")?,
        r.opt_i64("payment_failed_at")?,
    ) else {
        return Ok(None);
    };
    Ok(Some(PaymentFailure {
        invoice_id,
        amount_due_cents: r.opt_i64("payment_failed_amount_cents")?.unwrap_or(0),
        currency: r.opt_str("payment_failed_currency")?.unwrap_or_default(),
        at: at(at_ms),
    }))
}

pub struct BillingApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Billing")]
impl BillingApi {
    /// Plan, status, current period, and included vs used minutes with the overage so far.
    #[oai(path = "/billing", method = "get", operation_id = "get_billing")]
    async fn billing(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: Query<Option<Lenient<crate::http::query::position::Position>>>,
    ) -> Result<Json<BillingResponse>, ApiError> {
        let scope = begin(&state, req, &auth, &[], min_position.0).await?;
        let sub = subscription(&state, &scope).await?;
        let (start, end) = period(sub.as_ref())?;
        let usage = usage_rows(&state, &scope, start, end.max(start + 1)).await?;
        let mut used: i64 = usage.values().map(|d| d.minutes).sum();
        let mut calls: i64 = usage.values().map(|d| d.calls).sum();
        let cost: f64 = usage.values().map(|d| d.cost).sum();
        let (mut reported, mut thresholds) = (0, Vec::new());
        if let Some(metered) = metered_usage(&state, sub.as_ref()).await? {
            used = metered.minutes;
            calls = metered.calls;
            reported = metered.reported;
            thresholds = metered.thresholds;
        }
        let included = match &sub {
            Some(r) => r.opt_i64("included_minutes")?,
            None => None,
        };
        let plan = match &sub {
            Some(r) => state
                .config
                .plans
                .resolve(
                    r.opt_str("price_id")?.as_deref(),
                    r.opt_str("plan")?.as_deref(),
                )
                .cloned(),
            None => None,
        };
        let overage = included.map_or(0, |i| (used - i).max(0));
        let data = BillingOverview {
            subscription_id: sub.as_ref().map(|r| r.str("subscription_id")).transpose()?,
            status: match &sub {
                Some(r) => r.str("status")?,
                None => "none".to_string(),
            },
            plan: match (&plan, &sub) {
                (Some(p), _) => Some(p.id.clone()),
                (None, Some(r)) => r.opt_str("plan")?,
                (None, None) => None,
            },
            cancel_at_period_end: match &sub {
                Some(r) => r.i64("cancel_at_period_end")? != 0,
                None => false,
            },
            period_start: at(start),
            period_end: at(end),
            included_minutes: included,
            used_minutes: used,
            reported_minutes: reported,
            overage_minutes: overage,
            overage_cost_cents: plan.map(|p| overage.saturating_mul(p.overage_cents_per_minute)),
            remaining_minutes: included.map(|i| (i - used).max(0)),
            thresholds_reached: thresholds,
            calls,
            cost,
            payment_failed: match &sub {
                Some(r) => payment_failure(r)?,
                None => None,
            },
        };
        Ok(Json(BillingResponse {
            data,
            position: scope.position,
        }))
    }

    /// Daily usage (calls, seconds, billable minutes, cost) per UTC day.
    ///
    /// Defaults to the current billing period; at most 400 days.
    #[oai(
        path = "/billing/usage",
        method = "get",
        operation_id = "get_billing_usage"
    )]
    async fn usage(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// Start (RFC 3339, epoch ms or YYYY-MM-DD); default: the period's start.
        from: Query<Option<String>>,
        /// End, exclusive (RFC 3339, epoch ms or YYYY-MM-DD); default: the period's end.
        to: Query<Option<String>>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: Query<Option<Lenient<crate::http::query::position::Position>>>,
    ) -> Result<Json<UsageResponse>, ApiError> {
        let scope = begin(&state, req, &auth, &["from", "to"], min_position.0).await?;
        let (from_ms, to_ms) = if from.0.is_none() && to.0.is_none() {
            let sub = subscription(&state, &scope).await?;
            period(sub.as_ref())?
        } else {
            range(from.0, to.0, chrono_tz::UTC, 400)?
        };
        let usage = usage_rows(&state, &scope, from_ms, to_ms.max(from_ms + 1)).await?;
        let days: Vec<UsageDay> = usage.into_values().collect();
        Ok(Json(UsageResponse {
            data: Usage {
                from: at(from_ms),
                to: at(to_ms),
                total_calls: days.iter().map(|d| d.calls).sum(),
                total_minutes: days.iter().map(|d| d.minutes).sum(),
                total_cost: days.iter().map(|d| d.cost).sum(),
                days,
            },
            position: scope.position,
        }))
    }

    /// Invoices, newest first (keyset-paginated).
    #[oai(
        path = "/billing/invoices",
        method = "get",
        operation_id = "list_invoices"
    )]
    async fn invoices(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// Page size, 1 to 100 (default 25).
        limit: Query<Option<Lenient<crate::http::query::position::PageSize>>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: Query<Option<Lenient<crate::http::query::position::Position>>>,
    ) -> Result<Json<InvoicePage>, ApiError> {
        let scope = begin(&state, req, &auth, &["limit", "cursor"], min_position.0).await?;
        let limit = pagination::limit(limit.0)?;
        let cursor = pagination::keyset(cursor.0.as_deref())?;
        let mut sql = Sql::new(
            "SELECT invoice_id, subscription_id, status, amount_cents, currency, period_start, \
             period_end, hosted_invoice_url, at FROM billing_invoices WHERE organization_id = $1",
        );
        sql.args.push(Arg::Str(scope.org()));
        if let Some(c) = cursor {
            let k = sql.arg(Arg::I64(c.key));
            let id = sql.arg(Arg::Str(c.id));
            sql.push(&format!(
                " AND at <= {k} AND (at < {k} OR (at = {k} AND invoice_id < {id}))"
            ));
        }
        let n = sql.arg(Arg::I64(limit + 1));
        sql.push(&format!(" ORDER BY at DESC, invoice_id DESC LIMIT {n}"));
        let mut data = sql
            .fetch_all(&state)
            .await?
            .iter()
            .map(|r| {
                Ok(Invoice {
                    id: r.str("invoice_id")?,
                    subscription_id: r.str("subscription_id")?,
                    status: r.str("status")?,
                    amount_cents: r.i64("amount_cents")?,
                    currency: r.str("currency")?,
                    period_start: r.opt_i64("period_start")?.map(|v| at(stripe_ms(v))),
                    period_end: r.opt_i64("period_end")?.map(|v| at(stripe_ms(v))),
                    hosted_invoice_url: r.opt_str("hosted_invoice_url")?,
                    at: at(r.i64("at")?),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let more = data.len() as i64 > limit;
        data.truncate(limit as usize);
        let next_cursor = match data.last() {
            Some(last) if more => Some(
                Keyset {
                    key: last.at.timestamp_millis(),
                    id: last.id.clone(),
                }
                .encode(),
            ),
            _ => None,
        };
        Ok(Json(InvoicePage {
            data,
            next_cursor,
            position: scope.position,
        }))
    }
}
