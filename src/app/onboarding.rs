//! Onboarding use cases: ask for it (the owner), see where it stands, retry a failed step.
//! The work itself is the `onboarding` process (`processes::onboarding`).

use std::collections::BTreeMap;

use aggregates::organization::{OrganizationCommand, Role};
use aggregates::process::{Process, ProcessCommand, StepStatus};
use serde_json::Value;

use super::{assistants, organizations, AppError, Caller};
use crate::processes::onboarding::{KIND, STEPS};
use crate::processes::work;
use crate::state::AppState;

/// What the owner asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub business_name: String,
    pub template_slug: String,
    pub variables: BTreeMap<String, String>,
    pub area_code: Option<String>,
}

/// One step as it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: &'static str,
    /// pending, running, retrying, succeeded, skipped or failed.
    pub status: &'static str,
    pub attempts: u32,
    pub error: Option<String>,
}

/// Where the onboarding stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// not_started, running, failed or completed.
    pub status: &'static str,
    pub current_step: Option<&'static str>,
    pub completed_steps: Vec<&'static str>,
    pub steps: Vec<Step>,
    /// The error of the step that failed.
    pub error: Option<String>,
    pub assistant_id: Option<String>,
    pub vapi_assistant_id: Option<String>,
    pub phone_number_id: Option<String>,
    pub phone_number: Option<String>,
}

fn stream(caller: &Caller) -> String {
    Process::stream_id(KIND, &caller.organization_id.to_string())
}

/// Asks for onboarding; the welcome email goes to the owner asking.
pub async fn request(
    state: &AppState,
    caller: &Caller,
    request: Request,
    client_key: Option<&str>,
) -> Result<i64, AppError> {
    let org = organizations::load(state, caller).await?;
    let email = caller
        .actor
        .strip_prefix("user:")
        .and_then(|id| org.active_member(id))
        .filter(|m| m.role == Role::Owner)
        .map(|m| m.email.clone())
        .ok_or_else(|| AppError::forbidden("forbidden", "only an owner starts onboarding"))?;
    // The template and its variables are checked now, not minutes later in the process.
    let template = assistants::template(request.template_slug.trim())?;
    let mut variables = request.variables.clone();
    variables
        .entry("company_name".into())
        .or_insert_with(|| request.business_name.trim().to_string());
    assistants::render(&template, &variables, None, None)?;
    let command = OrganizationCommand::RequestOnboarding {
        business_name: request.business_name,
        template_slug: request.template_slug,
        variables: request.variables,
        area_code: request.area_code,
        email,
        at: state.clock.now(),
        actor: caller.actor.clone(),
    };
    let done = organizations::execute_as(state, caller, "onboarding", client_key, command).await?;
    Ok(done.result.last_position)
}

fn status_name(status: StepStatus, started: bool) -> &'static str {
    match status {
        StepStatus::Pending if started => "running",
        StepStatus::Pending => "pending",
        StepStatus::Retrying => "retrying",
        StepStatus::Succeeded => "succeeded",
        StepStatus::Skipped => "skipped",
        StepStatus::GaveUp => "failed",
    }
}

fn output<'a>(process: &'a Process, step: &str, key: &str) -> Option<&'a Value> {
    process
        .step(step)
        .map(|s| &s.output[key])
        .filter(|v| !v.is_null())
}

/// Where the caller's organization's onboarding stands.
pub async fn status(state: &AppState, caller: &Caller) -> Result<Status, AppError> {
    let org = organizations::load(state, caller).await?;
    let (process, _) = state.processes.load(&stream(caller)).await?;
    let mut steps = Vec::new();
    let (mut current, mut completed, mut error) = (None, Vec::new(), None);
    for name in STEPS {
        let step = process.step(name);
        let status = step.map_or(StepStatus::Pending, |s| s.status);
        // The first step not finished is the one running (or about to).
        let running = current.is_none() && !status.is_terminal();
        if running && process.started {
            current = Some(name);
        }
        if status == StepStatus::Succeeded {
            completed.push(name);
        }
        if status == StepStatus::GaveUp && error.is_none() {
            error = step.and_then(|s| s.last_error.clone());
            current = current.or(Some(name));
        }
        steps.push(Step {
            name,
            status: status_name(status, running && process.started),
            attempts: step.map_or(0, |s| s.attempts),
            error: step.and_then(|s| s.last_error.clone()),
        });
    }
    let overall = if !process.started && !org.onboarding_requested {
        "not_started"
    } else if error.is_some() {
        "failed"
    } else if process.completed {
        "completed"
    } else {
        "running"
    };
    let text = |step: &str, key: &str| {
        output(&process, step, key).and_then(|v| v.as_str().map(str::to_string))
    };
    Ok(Status {
        status: overall,
        current_step: if overall == "completed" {
            None
        } else {
            current
        },
        completed_steps: completed,
        steps,
        error,
        assistant_id: text("creating_assistant", "assistant_id"),
        vapi_assistant_id: text("syncing_assistant", "vapi_assistant_id"),
        phone_number_id: text("provisioning_number", "phone_number_id"),
        phone_number: text("provisioning_number", "phone_number"),
    })
}

/// Reopens every failed step (and the steps skipped because of it): the process resumes from
/// there. 409 `onboarding_not_failed` when nothing failed.
pub async fn retry(state: &AppState, caller: &Caller) -> Result<i64, AppError> {
    let stream = stream(caller);
    let (process, _) = state.processes.load(&stream).await?;
    let failed: Vec<String> = process
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::GaveUp)
        .map(|s| s.plan.name.clone())
        .collect();
    if failed.is_empty() {
        return Err(AppError::conflict(
            "onboarding_not_failed",
            "no onboarding step has failed; nothing to retry",
        ));
    }
    let meta = eventlog::CommandMeta::new(caller.actor.clone()).tenant(caller.organization_id);
    let mut position = 0;
    for step in failed {
        let reopen = ProcessCommand::Reopen {
            step,
            reason: format!("retried by {}", caller.actor),
            at: state.clock.now(),
        };
        let done = state.processes.execute(&stream, reopen, &meta).await?;
        position = done.result.last_position;
    }
    work::wake(
        state.store.pool(),
        KIND,
        &caller.organization_id.to_string(),
    )
    .await?;
    Ok(position)
}
