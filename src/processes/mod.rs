//! Durable processes on the log: the work after a call that the seed ran as Temporal
//! workflows.
//!
//! A process is two log consumers' worth of machinery (see ARCHITECTURE.md, "The flow of a
//! process"):
//! - its **starter** ([`starter::Starter`]) is a checkpointed consumer of the log that records
//!   the instances its events start in `process_work`, in the same transaction as its
//!   checkpoint (so a crash neither loses nor doubles a start); it has no other effect and is
//!   never rebuilt;
//! - its **worker** ([`worker::Worker`]) runs due instances: each instance's progress is its
//!   own stream of [`aggregates::process::ProcessEvent`]s (step attempted, succeeded, failed
//!   with its retry time, gave up, skipped, completed); the worker loads it, runs the steps
//!   that may run, records each outcome, and writes the instance's next due time back to
//!   `process_work` (the durable timer). A crash resumes from the stream.
//!
//! One worker per process is active per database (a PostgreSQL advisory lock; a standby takes
//! over when the holder's session dies). Effects go through `crate::app`'s use cases.
//!
//! The processes: [`call_processing`] (summary and extraction, notifications, close),
//! [`notification`] (one SMS or email), [`webhooks`] (one outbound webhook delivery),
//! [`billing`] (usage metering, billing notices, the billing cycle) and [`scheduled`]
//! (what a cron schedule's run does).

pub mod billing;
pub mod call_processing;
mod instance;
pub mod notification;
pub mod onboarding;
pub mod scheduled;
pub mod starter;
pub mod webhooks;
pub mod work;
pub mod worker;

use std::sync::Arc;

use aggregates::common::Timestamp;
use aggregates::process::{Process, StepPlan, StepState};
use async_trait::async_trait;
use eventlog::StoredEvent;
use projections::DomainEvent;
use serde_json::Value;

use crate::app::Caller;
use crate::state::AppState;
pub use work::Start;

/// What one attempt of a step came to.
#[derive(Debug, Clone, PartialEq)]
pub enum StepResult {
    Succeeded(Value),
    /// `retryable: false` gives up at once (retrying the same request cannot help).
    /// `detail` is what the attempt saw, kept with it in the log (`Null` for nothing).
    Failed {
        error: String,
        retryable: bool,
        detail: Value,
    },
    /// A provider asked us to wait (`Retry-After`): retried by the policy, not before `at`.
    Throttled {
        error: String,
        at: aggregates::common::Timestamp,
        detail: Value,
    },
    /// Nothing to do, with the reason.
    Skipped(String),
    /// Not now: run again at `until` (no attempt spent).
    Postponed {
        until: aggregates::common::Timestamp,
        reason: String,
    },
}

impl StepResult {
    pub fn retry(error: impl std::fmt::Display) -> Self {
        StepResult::Failed {
            error: error.to_string(),
            retryable: true,
            detail: Value::Null,
        }
    }

    pub fn give_up(error: impl std::fmt::Display) -> Self {
        StepResult::Failed {
            error: error.to_string(),
            retryable: false,
            detail: Value::Null,
        }
    }
}

impl StepResult {
    /// A provider's failure: a refusal gives up (the same request will be refused again); an
    /// outage is retried, not before the provider's `Retry-After` when it sent one.
    pub fn from_provider(err: crate::providers::ProviderError) -> Self {
        use crate::providers::ProviderError;
        match err {
            ProviderError::Rejected { .. } => StepResult::give_up(err),
            ProviderError::Unavailable {
                retry_after: Some(wait),
                ..
            } => StepResult::Throttled {
                at: chrono::Utc::now()
                    + chrono::Duration::from_std(wait)
                        .unwrap_or_else(|_| chrono::Duration::hours(1)),
                error: err.to_string(),
                detail: Value::Null,
            },
            _ => StepResult::retry(err),
        }
    }
}

impl From<crate::app::AppError> for StepResult {
    fn from(err: crate::app::AppError) -> Self {
        StepResult::Failed {
            retryable: err.retryable(),
            error: err.to_string(),
            detail: Value::Null,
        }
    }
}

/// What a step sees when it runs.
pub struct StepContext<'a> {
    pub state: &'a Arc<AppState>,
    pub process: &'a Process,
    pub step: &'a StepState,
    pub now: Timestamp,
}

impl StepContext<'_> {
    pub fn input(&self) -> &Value {
        &self.process.input
    }

    /// The process acting in its organization.
    pub fn caller(&self) -> Option<Caller> {
        self.process
            .organization_id
            .map(|org| Caller::process(&self.process.kind, org))
    }

    /// The idempotency key of this step's effects (the same on every attempt).
    pub fn key(&self, effect: &str) -> String {
        format!(
            "{}:{}:{effect}",
            Process::stream_id(&self.process.kind, &self.process.subject),
            self.step.plan.name
        )
    }

    pub fn output_of(&self, step: &str) -> Option<&Value> {
        self.process
            .step(step)
            .map(|s| &s.output)
            .filter(|o| !o.is_null())
    }
}

/// One kind of process.
#[async_trait]
pub trait ProcessDefinition: Send + Sync + 'static {
    /// The process kind (its streams are `{kind}:{subject}`).
    fn kind(&self) -> &'static str;

    /// The starter's checkpoint name (`process:{kind}`).
    fn consumer(&self) -> &'static str;

    /// Whether the starter needs to look at `event` (the batch-skip hint).
    fn wants(&self, event: &DomainEvent) -> bool;

    /// The instances `event` starts (from the event alone: the starter has no other input).
    fn starts(&self, stored: &StoredEvent, event: &DomainEvent) -> Vec<Start>;

    /// The instances `event` starts, for a starter that keeps state of its own: it may read
    /// and write its own tables in the starter's transaction, which commits with its
    /// checkpoint (so that state is exactly as of the log position it has reached).
    async fn start(
        &self,
        _tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        stored: &StoredEvent,
        event: &DomainEvent,
    ) -> Result<Vec<Start>, projections::ProjectionError> {
        Ok(self.starts(stored, event))
    }

    /// The instances each of `events` starts (one list per event, in order): by default event
    /// by event through [`start`](Self::start); a starter that reads its own tables may read
    /// them once for the whole batch.
    async fn start_batch(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        events: &[(StoredEvent, DomainEvent)],
    ) -> Result<Vec<Vec<Start>>, projections::ProjectionError> {
        let mut all = Vec::with_capacity(events.len());
        for (stored, event) in events {
            all.push(self.start(tx, stored, event).await?);
        }
        Ok(all)
    }

    /// An instance's plan.
    fn plan(&self, input: &Value, first_backoff_ms: i64) -> Vec<StepPlan>;

    /// Whether `step` records its attempt before running: true for an effect no provider
    /// key can deduplicate, so a crash mid-send leaves the attempt *in doubt* and the next
    /// run looks before it sends again.
    fn records_attempts(&self, _process: &Process, _step: &str) -> bool {
        false
    }

    /// Asked before a step's attempt (and before its attempt is recorded): `Some` answers
    /// for the attempt instead (a `Postponed` to wait, or a failure from looking). A step in
    /// doubt is never asked: its attempt is settled first.
    async fn postpone(&self, _ctx: &StepContext<'_>) -> Option<StepResult> {
        None
    }

    async fn run(&self, ctx: StepContext<'_>) -> StepResult;
}

/// Every process this service runs.
pub fn all(state: &Arc<AppState>) -> Vec<Arc<dyn ProcessDefinition>> {
    vec![
        Arc::new(call_processing::CallProcessing::new(state)),
        Arc::new(notification::Notify::new(state)),
        Arc::new(webhooks::Webhooks::new(state)),
        Arc::new(billing::UsageMetering::new(state)),
        Arc::new(billing::notices::BillingNotices),
        Arc::new(billing::cycle::BillingCycle::new(state)),
        Arc::new(scheduled::ScheduledRuns),
        Arc::new(onboarding::Onboarding::new(state)),
    ]
}
