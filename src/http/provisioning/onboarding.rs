//! `POST /api/v1/onboarding` (the owner of a new organization), `GET /onboarding` and
//! `POST /onboarding/retry`: the onboarding process (assistant from a template, synced to
//! VAPI, a number bought in the area code and linked, the Stripe customer, the welcome
//! email), its progress, and resuming it from a failed step.

use std::collections::BTreeMap;
use std::sync::Arc;

use poem::web::Data;
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::{begin, field, idempotency_key};
use crate::app::onboarding::{self as app, Status};
use crate::http::error::ApiError;
use crate::http::query::principal::OrganizationHeader;
use crate::http::ApiTags;
use crate::state::AppState;

#[derive(Debug, Object)]
pub struct NewOnboarding {
    /// The business's name as callers know it (the template's `company_name` by default).
    #[oai(validator(max_length = 200))]
    pub business_name: String,
    /// A template from `GET /templates`.
    #[oai(validator(max_length = 64))]
    pub template_slug: String,
    /// The template's variables (`GET /templates` lists them).
    pub variables: Option<BTreeMap<String, String>>,
    /// A 3-digit US area code for the number (default 415).
    #[oai(validator(pattern = r"^[2-9][0-9]{2}$"))]
    pub area_code: Option<String>,
}

#[derive(Debug, Object)]
pub struct OnboardingStep {
    pub name: String,
    /// pending, running, retrying, succeeded, skipped or failed.
    pub status: String,
    pub attempts: u32,
    pub error: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Onboarding {
    /// not_started, running, failed or completed.
    pub status: String,
    pub current_step: Option<String>,
    pub completed_steps: Vec<String>,
    pub steps: Vec<OnboardingStep>,
    /// Why the failed step failed (`POST /onboarding/retry` resumes from it).
    pub error: Option<String>,
    pub assistant_id: Option<String>,
    pub vapi_assistant_id: Option<String>,
    pub phone_number_id: Option<String>,
    pub phone_number: Option<String>,
}

#[derive(Debug, Object)]
pub struct OnboardingResponse {
    pub data: Onboarding,
    /// The log position written (0 for a read).
    pub position: i64,
}

fn view(s: Status, position: i64) -> OnboardingResponse {
    OnboardingResponse {
        data: Onboarding {
            status: s.status.into(),
            current_step: s.current_step.map(Into::into),
            completed_steps: s.completed_steps.into_iter().map(Into::into).collect(),
            steps: s
                .steps
                .into_iter()
                .map(|step| OnboardingStep {
                    name: step.name.into(),
                    status: step.status.into(),
                    attempts: step.attempts,
                    error: step.error,
                })
                .collect(),
            error: s.error,
            assistant_id: s.assistant_id,
            vapi_assistant_id: s.vapi_assistant_id,
            phone_number_id: s.phone_number_id,
            phone_number: s.phone_number,
        },
        position,
    }
}

#[derive(ApiResponse)]
pub enum StartResponse {
    /// Accepted: the process runs in the background (poll `GET /onboarding`).
    #[oai(status = 202)]
    Accepted(Json<OnboardingResponse>),
}

pub struct OnboardingApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Organizations")]
impl OnboardingApi {
    /// Start onboarding (an owner, once per organization): the assistant from the template,
    /// synced to VAPI, a number in the area code linked to it, the Stripe customer and the
    /// welcome email. 409 `onboarding_already_requested`; 422 `unknown_template`,
    /// `missing_variable`; 403 for anyone but an owner.
    #[oai(
        path = "/onboarding",
        method = "post",
        operation_id = "start_onboarding"
    )]
    async fn start(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        body: Json<NewOnboarding>,
    ) -> Result<StartResponse, ApiError> {
        let (principal, _) = begin(&state, req, &auth).await?;
        let body = body.0;
        let request = app::Request {
            business_name: field("business_name", &body.business_name, 200)?,
            template_slug: field("template_slug", &body.template_slug, 64)?,
            variables: body.variables.unwrap_or_default(),
            area_code: body.area_code,
        };
        let caller = principal.caller();
        let key = idempotency_key(req);
        let position = app::request(&state, &caller, request, key.as_deref()).await?;
        let status = app::status(&state, &caller).await?;
        Ok(StartResponse::Accepted(Json(view(status, position))))
    }

    /// Where onboarding stands: the current step, the steps done, the number and assistant
    /// once known, and the error of a failed step.
    #[oai(path = "/onboarding", method = "get", operation_id = "get_onboarding")]
    async fn get(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
    ) -> Result<Json<OnboardingResponse>, ApiError> {
        let (principal, _) = begin(&state, req, &auth).await?;
        let status = app::status(&state, &principal.caller()).await?;
        Ok(Json(view(status, 0)))
    }

    /// Resume onboarding from the step that failed (owners and admins). 409
    /// `onboarding_not_failed` when no step failed.
    #[oai(
        path = "/onboarding/retry",
        method = "post",
        operation_id = "retry_onboarding"
    )]
    async fn retry(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
    ) -> Result<StartResponse, ApiError> {
        let (principal, _) = begin(&state, req, &auth).await?;
        super::require_manage(&principal)?;
        let caller = principal.caller();
        let position = app::retry(&state, &caller).await?;
        let status = app::status(&state, &caller).await?;
        Ok(StartResponse::Accepted(Json(view(status, position))))
    }
}
