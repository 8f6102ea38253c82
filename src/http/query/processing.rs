//! `GET /api/v1/calls/{id}/processing`: how the call's post-call processing stands, step by
//! step, from its process stream (a step that gave up is shown with its reason).

use std::sync::Arc;

use aggregates::process::{Process, StepStatus};
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::http::error::ApiError;
use crate::http::query::principal::OrganizationHeader;
use crate::http::query::{begin, Lenient};
use crate::http::ApiTags;
use crate::state::AppState;

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ProcessingStep {
    pub name: String,
    /// `pending`, `retrying`, `succeeded`, `skipped` or `gave_up`.
    pub status: String,
    pub attempts: u32,
    /// When a failed (or postponed) step runs again.
    pub retry_at: Option<DateTime<Utc>>,
    /// The last failure, or why the step was skipped.
    pub last_error: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Processing {
    /// `not_started` (the call has not ended, or its processing is about to begin),
    /// `running`, `completed` or `failed` (completed with a step that gave up).
    pub status: String,
    pub steps: Vec<ProcessingStep>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ProcessingResponse {
    pub data: Processing,
    pub position: i64,
}

fn status_name(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Pending => "pending",
        StepStatus::Retrying => "retrying",
        StepStatus::Succeeded => "succeeded",
        StepStatus::Skipped => "skipped",
        StepStatus::GaveUp => "gave_up",
    }
}

pub struct ProcessingApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Calls")]
impl ProcessingApi {
    /// The call's post-call processing (summary and extraction, notifications, recording,
    /// close), step by step.
    #[oai(
        path = "/calls/:id/processing",
        method = "get",
        operation_id = "get_call_processing"
    )]
    async fn get(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The call id.
        id: Path<String>,
        /// Wait (up to 5 s) until the read models reflect this log position.
        min_position: Query<Option<Lenient<crate::http::query::position::Position>>>,
    ) -> Result<Json<ProcessingResponse>, ApiError> {
        let scope = begin(&state, req, &auth, &[], min_position.0).await?;
        super::calls::find(&state, &scope, &id.0).await?;
        let stream = Process::stream_id(crate::processes::call_processing::KIND, &id.0);
        let (process, _) = state.processes.load(&stream).await?;
        let status = if !process.started {
            "not_started"
        } else if !process.completed {
            "running"
        } else if process.failed_steps().is_empty() {
            "completed"
        } else {
            "failed"
        };
        let steps = process
            .steps
            .iter()
            .map(|s| ProcessingStep {
                name: s.plan.name.clone(),
                status: status_name(s.status).to_string(),
                attempts: s.attempts,
                retry_at: s.retry_at,
                last_error: s.last_error.clone(),
            })
            .collect();
        Ok(Json(ProcessingResponse {
            data: Processing {
                status: status.to_string(),
                steps,
            },
            position: scope.position,
        }))
    }
}
