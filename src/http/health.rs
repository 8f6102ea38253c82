//! `GET /health` on the service's port: a plain liveness answer for anyone. The detailed view
//! (store backend, log head, every projector's and process's position, lag and errors, which
//! providers run in sandbox mode, the group-commit counters) is `GET /health` on the
//! operator port (see [`super::operator`]), which is not exposed with the API.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::http::error::ApiError;
use crate::http::ApiTags;
use crate::state::AppState;

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ProjectorHealth {
    pub name: String,
    /// Last applied log position.
    pub position: i64,
    /// Transaction id half of the commit-order checkpoint (0 on SQLite).
    pub transaction_id: i64,
    /// Events in the log not yet applied.
    pub lag: i64,
    /// False while another process holds this projector (PostgreSQL standby).
    pub active: bool,
    pub last_error: Option<String>,
}

/// A durable process: its starter's place in the log and its instances by standing.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ProcessHealth {
    pub name: String,
    /// This instance runs the process's worker (one per database).
    pub active: bool,
    /// The starter's checkpoint and how many events it has still to read.
    pub position: i64,
    pub lag: i64,
    /// Steps this instance's worker has run since it started.
    pub steps_run: u64,
    /// Instances recorded but not yet begun.
    pub pending: i64,
    pub running: i64,
    /// Waiting for a failed step's retry.
    pub retrying: i64,
    /// Completed with a step that gave up.
    pub failed: i64,
    pub completed: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ProviderMode {
    pub name: String,
    /// True when no credentials are configured: requests are recorded, not sent.
    pub sandbox: bool,
    /// `live` (credentials configured and requests sent), `sandbox` (recorded, not sent) or
    /// `unused` (nothing in this version calls the provider yet).
    pub mode: String,
}

/// Appends since start (PostgreSQL): concurrent appends to different streams share statements.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct GroupCommit {
    /// Statements written, alone or shared.
    pub statements: u64,
    /// Appends written (one per command).
    pub appends: u64,
    /// Statements that carried more than one append.
    pub shared_statements: u64,
    /// Shared statements that failed and whose appends were written again one by one.
    pub regrouped: u64,
}

/// The request path's load and whether the processes are yielding to it.
#[derive(Debug, Object)]
pub struct ForegroundHealth {
    /// Requests in flight, averaged over the last 100 ms.
    pub requests_in_flight: f64,
    /// True while the request path is busy: the processes take turns at their share.
    pub background_yielding: bool,
    /// Process runs that waited for their turn since start-up.
    pub background_runs_yielded: u64,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Health {
    /// `ok`, or `degraded` when a projector reports an error.
    pub status: String,
    pub backend: String,
    /// This process's part in projecting: `active` (its projectors write the read models),
    /// `standby` (another process's do; this one follows their checkpoints and takes over
    /// within seconds if that process dies) or `partly_active` (during a takeover).
    pub role: String,
    /// This process's id, to tell processes apart.
    pub pid: u32,
    /// Highest position in the log.
    pub log_head: i64,
    pub projectors: Vec<ProjectorHealth>,
    pub processes: Vec<ProcessHealth>,
    pub providers: Vec<ProviderMode>,
    pub foreground: ForegroundHealth,
    /// Absent on SQLite, which writes one append at a time.
    pub group_commit: Option<GroupCommit>,
}

/// The plain answer anyone gets.
#[derive(Debug, Object)]
pub struct Liveness {
    /// `ok`, or `degraded` when a projector reports an error (details on the operator port).
    pub status: String,
}

pub struct HealthApi;

#[OpenApi(tag = "ApiTags::Operations")]
impl HealthApi {
    /// Liveness: the service answers. Positions, lag and errors are on the operator port.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self, state: Data<&Arc<AppState>>) -> Json<Liveness> {
        let degraded = state
            .projectors
            .iter()
            .any(|p| p.status().last_error.is_some());
        Json(Liveness {
            status: if degraded { "degraded" } else { "ok" }.to_string(),
        })
    }
}

/// The operators' detailed view.
pub async fn detail(state: &AppState) -> Result<Health, ApiError> {
    let head = state.store.head().await?;
    let mut projectors = Vec::new();
    for handle in &state.projectors {
        let status = handle.status();
        let lag = state.store.count_after(status.checkpoint).await?;
        projectors.push(ProjectorHealth {
            name: handle.name().to_string(),
            position: status.checkpoint.position,
            transaction_id: status.checkpoint.transaction_id,
            lag,
            active: status.active,
            last_error: status.last_error,
        });
    }
    let mut processes = Vec::new();
    for handle in state.processes_running.get().into_iter().flatten() {
        let starter = handle.starter.status();
        let worker = handle.status();
        let counts = crate::processes::work::counts(state.store.pool(), handle.kind).await?;
        let count = |standing: &str| {
            counts
                .iter()
                .find(|(s, _)| s == standing)
                .map_or(0, |(_, n)| *n)
        };
        processes.push(ProcessHealth {
            name: handle.kind.to_string(),
            active: worker.active,
            position: starter.checkpoint.position,
            lag: state.store.count_after(starter.checkpoint).await?,
            steps_run: worker.steps_run,
            pending: count("pending"),
            running: count("running"),
            retrying: count("retrying"),
            failed: count("failed"),
            completed: count("completed"),
            last_error: worker.last_error.or(starter.last_error),
        });
    }
    let c = &state.config;
    let providers = [
        ("vapi", c.vapi.sandbox(), true),
        ("twilio", c.twilio.sandbox(), true),
        ("stripe", c.stripe.sandbox(), true),
        ("resend", c.resend.sandbox(), true),
        ("llm", c.llm.sandbox(), true),
        ("google_calendar", c.google.sandbox(), true),
        ("hubspot", c.hubspot.sandbox(), true),
    ]
    .into_iter()
    .map(|(name, sandbox, used)| ProviderMode {
        name: name.to_string(),
        sandbox,
        mode: match (used, sandbox) {
            (false, _) => "unused",
            (true, true) => "sandbox",
            (true, false) => "live",
        }
        .to_string(),
    })
    .collect();
    let degraded = projectors.iter().any(|p| p.last_error.is_some());
    let active = projectors.iter().filter(|p| p.active).count();
    let role = match active {
        0 => "standby",
        n if n == projectors.len() => "active",
        _ => "partly_active",
    };
    Ok(Health {
        status: if degraded { "degraded" } else { "ok" }.to_string(),
        backend: state.store.backend().name().to_string(),
        role: role.to_string(),
        pid: std::process::id(),
        log_head: head,
        projectors,
        processes,
        providers,
        foreground: ForegroundHealth {
            requests_in_flight: state.foreground.average(),
            background_yielding: state.foreground.busy(),
            background_runs_yielded: state.foreground.yielded(),
        },
        group_commit: state.store.group_commit_stats().map(|g| GroupCommit {
            statements: g.statements,
            appends: g.appends,
            shared_statements: g.shared_statements,
            regrouped: g.regrouped,
        }),
    })
}
