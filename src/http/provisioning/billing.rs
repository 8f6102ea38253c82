//! `POST /api/v1/billing/checkout` and `/billing/portal` (owners and admins) and
//! `GET /billing/plans`: subscribing through Stripe Checkout and managing the subscription
//! in Stripe's Billing Portal. The loop closes through Stripe's webhooks
//! (`checkout.session.completed`, `customer.subscription.*`), which the billing read models
//! and `GET /billing` follow.

use std::sync::Arc;

use poem::web::Data;
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::{begin, idempotency_key};
use crate::app::billing::{self as app, Session};
use crate::http::error::ApiError;
use crate::http::query::principal::OrganizationHeader;
use crate::http::ApiTags;
use crate::plans::Plan;
use crate::state::AppState;

/// A plan of the catalogue.
#[derive(Debug, Object)]
pub struct PlanView {
    pub id: String,
    pub name: String,
    pub monthly_price_cents: i64,
    /// Minutes included per billing period.
    pub included_minutes: i64,
    /// Price of each minute beyond the included ones.
    pub overage_cents_per_minute: i64,
}

impl From<&Plan> for PlanView {
    fn from(p: &Plan) -> Self {
        PlanView {
            id: p.id.clone(),
            name: p.name.clone(),
            monthly_price_cents: p.monthly_price_cents,
            included_minutes: p.included_minutes,
            overage_cents_per_minute: p.overage_cents_per_minute,
        }
    }
}

#[derive(Debug, Object)]
pub struct PlanList {
    pub data: Vec<PlanView>,
}

#[derive(Debug, Object)]
pub struct NewCheckout {
    /// A plan id from `GET /billing/plans`.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub plan: String,
    /// Where Stripe sends the customer after paying (default: the dashboard's billing page).
    #[oai(validator(max_length = 2048))]
    pub success_url: Option<String>,
    /// Where Stripe sends a customer who cancels (default: the billing page).
    #[oai(validator(max_length = 2048))]
    pub cancel_url: Option<String>,
}

#[derive(Debug, Object)]
pub struct NewPortal {
    /// Where the portal's "return" link goes (default: the billing page).
    #[oai(validator(max_length = 2048))]
    pub return_url: Option<String>,
}

/// A Stripe-hosted page.
#[derive(Debug, Object)]
pub struct BillingSession {
    pub id: String,
    /// Send the customer here.
    pub url: String,
    /// True when nothing was sent to Stripe (no `STRIPE_SECRET_KEY`): the URL is ours.
    pub sandbox: bool,
}

#[derive(Debug, Object)]
pub struct BillingSessionResponse {
    pub data: BillingSession,
}

impl From<Session> for BillingSessionResponse {
    fn from(s: Session) -> Self {
        BillingSessionResponse {
            data: BillingSession {
                id: s.id,
                url: s.url,
                sandbox: s.sandbox,
            },
        }
    }
}

/// An absolute http(s) URL, or the billing page with `outcome` by default.
fn page(
    state: &AppState,
    given: Option<String>,
    field: &str,
    outcome: &str,
) -> Result<String, ApiError> {
    let Some(url) = given.map(|u| u.trim().to_string()) else {
        let base = state.config.public_url.trim_end_matches('/');
        return Ok(format!("{base}/billing?{outcome}"));
    };
    match reqwest::Url::parse(&url) {
        Ok(parsed) if matches!(parsed.scheme(), "https" | "http") && parsed.host().is_some() => {
            Ok(url)
        }
        _ => Err(ApiError::unprocessable(
            "invalid_input",
            format!("{field} must be an absolute http(s) URL"),
        )
        .with_details(serde_json::json!({ "field": field }))),
    }
}

pub struct BillingActionsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Billing")]
impl BillingActionsApi {
    /// The plans an organization can subscribe to.
    #[oai(path = "/billing/plans", method = "get", operation_id = "list_plans")]
    async fn plans(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
    ) -> Result<Json<PlanList>, ApiError> {
        begin(&state, req, &auth).await?;
        Ok(Json(PlanList {
            data: state
                .config
                .plans
                .all()
                .iter()
                .map(PlanView::from)
                .collect(),
        }))
    }

    /// Start a subscription: a Stripe Checkout Session (subscription mode) for a plan, with
    /// the organization's Stripe customer (created on first use). Send the customer to `url`.
    ///
    /// Owners and admins only (403). 422 `unknown_plan`; 502/503 when Stripe fails. Send
    /// `Idempotency-Key` to make a retry answer the same session.
    #[oai(
        path = "/billing/checkout",
        method = "post",
        operation_id = "create_checkout"
    )]
    async fn checkout(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        body: Json<NewCheckout>,
    ) -> Result<Json<BillingSessionResponse>, ApiError> {
        let (principal, _) = begin(&state, req, &auth).await?;
        let body = body.0;
        let plan = state.config.plans.by_id(body.plan.trim()).ok_or_else(|| {
            let known: Vec<&str> = state
                .config
                .plans
                .all()
                .iter()
                .map(|p| p.id.as_str())
                .collect();
            ApiError::unprocessable("unknown_plan", format!("no plan `{}`", body.plan.trim()))
                .with_details(serde_json::json!({ "field": "plan", "known": known }))
        })?;
        let success = page(&state, body.success_url, "success_url", "checkout=success")?;
        let cancel = page(&state, body.cancel_url, "cancel_url", "checkout=canceled")?;
        let key = idempotency_key(req);
        let session = app::checkout(
            &state,
            &principal.caller(),
            plan,
            &success,
            &cancel,
            key.as_deref(),
        )
        .await?;
        Ok(Json(session.into()))
    }

    /// Manage the subscription and payment methods: a Stripe Billing Portal session for the
    /// organization's customer. Owners and admins only (403).
    #[oai(
        path = "/billing/portal",
        method = "post",
        operation_id = "create_billing_portal"
    )]
    async fn portal(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        body: Json<NewPortal>,
    ) -> Result<Json<BillingSessionResponse>, ApiError> {
        let (principal, _) = begin(&state, req, &auth).await?;
        let back = page(&state, body.0.return_url, "return_url", "portal=returned")?;
        let key = idempotency_key(req);
        let session = app::portal(&state, &principal.caller(), &back, key.as_deref()).await?;
        Ok(Json(session.into()))
    }
}
