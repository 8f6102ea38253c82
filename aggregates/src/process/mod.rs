//! [`Process`]: one stream per instance of a durable process (a call's post-call processing,
//! one notification, ...). The stream is the instance's whole memory: which steps ran, how
//! often, with what outcome, and when a failed step is due again. A worker that crashes
//! resumes from it; nothing else records progress.
//!
//! The decisions here are the runtime's policy, kept pure: a failure is retried after the
//! step's back-off until its attempts are spent, then the step has *given up* and the steps
//! that `need` it are skipped while the rest go on; an attempt recorded before a send that
//! has no outcome is *in doubt* (the worker died mid-send) and the step's executor is told so.

mod event;
mod plan;
#[cfg(test)]
mod tests;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::common::{write_all, Timestamp};
pub use event::ProcessEvent;
pub use plan::{RetryPolicy, StepPlan};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    #[default]
    Pending,
    Retrying,
    Succeeded,
    Skipped,
    GaveUp,
}

impl StepStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepStatus::Succeeded | StepStatus::Skipped | StepStatus::GaveUp
        )
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StepState {
    pub plan: StepPlan,
    pub status: StepStatus,
    /// Attempts finished or in doubt.
    pub attempts: u32,
    pub retry_at: Option<Timestamp>,
    /// An attempt was recorded before a send and has no outcome yet.
    pub in_doubt: bool,
    pub last_error: Option<String>,
    pub output: serde_json::Value,
    /// How many times the step was reopened: its attempts count from 1 again, so what
    /// records them (idempotency keys) tells the rounds apart.
    #[serde(default)]
    pub round: u32,
}

impl StepState {
    /// `{attempt}`, or `r{round}.{attempt}` after a reopen: unique per attempt of the step.
    pub fn attempt_label(&self, attempt: u32) -> String {
        match self.round {
            0 => attempt.to_string(),
            round => format!("r{round}.{attempt}"),
        }
    }
}

/// When an instance next needs its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Now,
    At(Timestamp),
    /// Completed: never again.
    Never,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Process {
    pub kind: String,
    pub subject: String,
    pub organization_id: Option<Uuid>,
    pub input: serde_json::Value,
    pub steps: Vec<StepState>,
    pub started: bool,
    pub completed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProcessCommand {
    /// Start the instance with its plan (a started instance ignores it: the first plan wins).
    Begin {
        kind: String,
        subject: String,
        organization_id: Option<Uuid>,
        input: serde_json::Value,
        steps: Vec<StepPlan>,
        at: Timestamp,
    },
    /// Record that a step is about to do something a provider cannot deduplicate.
    Attempt { step: String, at: Timestamp },
    Succeed {
        step: String,
        output: serde_json::Value,
        at: Timestamp,
    },
    /// A failed attempt; `retryable: false` gives up at once (retrying cannot help).
    /// `not_before` (a provider's `Retry-After`) moves the retry later, never earlier, and
    /// spends no extra attempt.
    Fail {
        step: String,
        error: String,
        retryable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_before: Option<Timestamp>,
        /// What the attempt saw (e.g. a receiver's status code and first bytes), kept with it.
        #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
        detail: serde_json::Value,
        at: Timestamp,
    },
    /// The step has nothing to do (its reason is kept).
    Skip {
        step: String,
        reason: String,
        at: Timestamp,
    },
    /// The step waits until `until` without spending an attempt.
    Postpone {
        step: String,
        until: Timestamp,
        reason: String,
        at: Timestamp,
    },
    /// Runs a step that gave up (or was skipped) again from its first attempt, with the steps
    /// that were skipped because they needed it (someone asked: a dead letter retried).
    Reopen {
        step: String,
        reason: String,
        at: Timestamp,
    },
    /// Several commands decided in order and recorded as one append (a new instance's start
    /// with its first outcomes: one write instead of two).
    Batch(Vec<ProcessCommand>),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProcessError {
    #[error("the process has not started")]
    NotStarted,
    #[error("the process has no step {0:?}")]
    UnknownStep(String),
    #[error("step {0:?} cannot run yet")]
    NotRunnable(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("step {0:?} has not given up: there is nothing to retry")]
    NotReopenable(String),
}

impl ProcessError {
    pub fn code(&self) -> &'static str {
        match self {
            ProcessError::NotStarted => "process_not_started",
            ProcessError::UnknownStep(_) => "unknown_step",
            ProcessError::NotRunnable(_) => "step_not_runnable",
            ProcessError::InvalidInput(_) => "invalid_input",
            ProcessError::NotReopenable(_) => "not_retryable",
        }
    }
}

impl Process {
    /// The stream id of an instance.
    pub fn stream_id(kind: &str, subject: &str) -> String {
        format!("{kind}:{subject}")
    }

    pub fn step(&self, name: &str) -> Option<&StepState> {
        self.steps.iter().find(|s| s.plan.name == name)
    }

    fn terminal(&self, name: &str) -> bool {
        self.step(name).is_some_and(|s| s.status.is_terminal())
    }

    /// Every step this one waits for has finished, one way or another.
    fn ready(&self, step: &StepState) -> bool {
        step.plan
            .after
            .iter()
            .chain(&step.plan.needs)
            .all(|dep| self.terminal(dep))
    }

    /// The steps a worker may run at `now`.
    pub fn runnable(&self, now: Timestamp) -> Vec<&StepState> {
        if !self.started || self.completed {
            return Vec::new();
        }
        self.steps
            .iter()
            .filter(|s| match s.status {
                StepStatus::Pending => true,
                StepStatus::Retrying => s.retry_at.is_none_or(|t| t <= now),
                _ => false,
            })
            .filter(|s| self.ready(s))
            .collect()
    }

    /// When the worker next has something to do for this instance.
    pub fn due(&self, now: Timestamp) -> Due {
        if self.completed {
            return Due::Never;
        }
        if !self.started || !self.runnable(now).is_empty() {
            return Due::Now;
        }
        self.steps
            .iter()
            .filter(|s| s.status == StepStatus::Retrying && self.ready(s))
            .filter_map(|s| s.retry_at)
            .min()
            .map_or(Due::Now, Due::At)
    }

    /// Steps that gave up.
    pub fn failed_steps(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|s| s.status == StepStatus::GaveUp)
            .map(|s| s.plan.name.clone())
            .collect()
    }

    pub fn decide(&self, command: ProcessCommand) -> Result<Vec<ProcessEvent>, ProcessError> {
        if let ProcessCommand::Batch(commands) = command {
            let mut scratch = self.clone();
            let mut events = Vec::new();
            for command in commands {
                for event in scratch.decide(command)? {
                    scratch.apply_event(event.clone());
                    events.push(event);
                }
            }
            return Ok(events);
        }
        if let ProcessCommand::Reopen { step, reason, at } = command {
            return self.reopen(step, reason, at);
        }
        if let ProcessCommand::Begin {
            kind,
            subject,
            organization_id,
            input,
            steps,
            at,
        } = command
        {
            if self.started {
                return Ok(Vec::new());
            }
            plan::validate(&steps).map_err(ProcessError::InvalidInput)?;
            return Ok(vec![ProcessEvent::ProcessStarted {
                kind,
                subject,
                organization_id,
                input,
                steps,
                at,
            }]);
        }
        if !self.started {
            return Err(ProcessError::NotStarted);
        }
        let name = match &command {
            ProcessCommand::Attempt { step, .. }
            | ProcessCommand::Succeed { step, .. }
            | ProcessCommand::Fail { step, .. }
            | ProcessCommand::Skip { step, .. }
            | ProcessCommand::Postpone { step, .. } => step.clone(),
            ProcessCommand::Begin { .. }
            | ProcessCommand::Reopen { .. }
            | ProcessCommand::Batch(_) => unreachable!("handled above"),
        };
        let step = self
            .step(&name)
            .ok_or_else(|| ProcessError::UnknownStep(name.clone()))?;
        if step.status.is_terminal() {
            // A repeated outcome (a worker resumed after recording it): nothing new.
            return Ok(Vec::new());
        }
        if !self.ready(step) {
            return Err(ProcessError::NotRunnable(name));
        }
        let attempt = if step.in_doubt {
            step.attempts
        } else {
            step.attempts + 1
        };
        let mut events = match command {
            ProcessCommand::Attempt { at, .. } => {
                if step.in_doubt {
                    return Ok(Vec::new());
                }
                return Ok(vec![ProcessEvent::StepAttempted {
                    step: name,
                    attempt,
                    at,
                }]);
            }
            ProcessCommand::Succeed { output, at, .. } => vec![ProcessEvent::StepSucceeded {
                step: name,
                attempt,
                output,
                at,
            }],
            ProcessCommand::Skip { reason, at, .. } => vec![ProcessEvent::StepSkipped {
                step: name,
                reason,
                at,
            }],
            ProcessCommand::Postpone {
                until, reason, at, ..
            } => {
                if step.in_doubt {
                    // An attempt may have gone out: it must be settled, not postponed.
                    return Err(ProcessError::NotRunnable(name));
                }
                return Ok(vec![ProcessEvent::StepPostponed {
                    step: name,
                    until,
                    reason,
                    at,
                }]);
            }
            ProcessCommand::Fail {
                error,
                retryable,
                not_before,
                detail,
                at,
                ..
            } => {
                let retry_at = retryable
                    .then(|| step.plan.policy.retry_at(attempt, at, &self.subject))
                    .flatten()
                    .map(|due| not_before.map_or(due, |later| due.max(later)));
                let mut events = vec![ProcessEvent::StepFailed {
                    step: name.clone(),
                    attempt,
                    error: error.clone(),
                    retry_at,
                    detail,
                    at,
                }];
                if retry_at.is_none() {
                    events.push(ProcessEvent::StepGaveUp {
                        step: name,
                        attempts: attempt,
                        error,
                        at,
                    });
                }
                events
            }
            ProcessCommand::Begin { .. }
            | ProcessCommand::Reopen { .. }
            | ProcessCommand::Batch(_) => unreachable!("handled above"),
        };
        self.cascade(&mut events);
        Ok(events)
    }

    fn reopen(
        &self,
        step: String,
        reason: String,
        at: Timestamp,
    ) -> Result<Vec<ProcessEvent>, ProcessError> {
        if !self.started {
            return Err(ProcessError::NotStarted);
        }
        let state = self
            .step(&step)
            .ok_or_else(|| ProcessError::UnknownStep(step.clone()))?;
        if !matches!(state.status, StepStatus::GaveUp | StepStatus::Skipped) {
            return Err(ProcessError::NotReopenable(step));
        }
        // The step, and the steps skipped because they needed a reopened one.
        let mut reopened = vec![step];
        loop {
            let more: Vec<String> = self
                .steps
                .iter()
                .filter(|s| s.status == StepStatus::Skipped)
                .filter(|s| !reopened.contains(&s.plan.name))
                .filter(|s| s.plan.needs.iter().any(|n| reopened.contains(n)))
                .map(|s| s.plan.name.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            reopened.extend(more);
        }
        Ok(reopened
            .into_iter()
            .map(|step| ProcessEvent::StepReopened {
                step,
                reason: reason.clone(),
                at,
            })
            .collect())
    }

    /// After `events`: skip the steps whose needed step gave up or was skipped, and complete
    /// the instance when every step has finished.
    fn cascade(&self, events: &mut Vec<ProcessEvent>) {
        let mut after = self.clone();
        for event in events.iter() {
            after.apply_event(event.clone());
        }
        let at = events.last().map(ProcessEvent::at).unwrap_or_default();
        loop {
            let blocked: Vec<(String, String)> = after
                .steps
                .iter()
                .filter(|s| !s.status.is_terminal())
                .filter_map(|s| {
                    s.plan
                        .needs
                        .iter()
                        .find(|dep| {
                            after.step(dep).is_some_and(|d| {
                                matches!(d.status, StepStatus::GaveUp | StepStatus::Skipped)
                            })
                        })
                        .map(|dep| (s.plan.name.clone(), dep.clone()))
                })
                .collect();
            if blocked.is_empty() {
                break;
            }
            for (step, dep) in blocked {
                let event = ProcessEvent::StepSkipped {
                    step,
                    reason: format!("needs {dep}, which did not succeed"),
                    at,
                };
                after.apply_event(event.clone());
                events.push(event);
            }
        }
        if after.steps.iter().all(|s| s.status.is_terminal()) {
            events.push(ProcessEvent::ProcessCompleted {
                failed_steps: after.failed_steps(),
                at,
            });
        }
    }

    fn step_mut(&mut self, name: &str) -> Option<&mut StepState> {
        self.steps.iter_mut().find(|s| s.plan.name == name)
    }

    fn apply_event(&mut self, event: ProcessEvent) {
        match event {
            ProcessEvent::ProcessStarted {
                kind,
                subject,
                organization_id,
                input,
                steps,
                ..
            } => {
                self.kind = kind;
                self.subject = subject;
                self.organization_id = organization_id;
                self.input = input;
                self.steps = steps
                    .into_iter()
                    .map(|plan| StepState {
                        plan,
                        ..StepState::default()
                    })
                    .collect();
                self.started = true;
            }
            ProcessEvent::StepAttempted { step, attempt, .. } => {
                if let Some(s) = self.step_mut(&step) {
                    s.attempts = attempt;
                    s.in_doubt = true;
                }
            }
            ProcessEvent::StepSucceeded {
                step,
                attempt,
                output,
                ..
            } => {
                if let Some(s) = self.step_mut(&step) {
                    s.attempts = attempt;
                    s.in_doubt = false;
                    s.status = StepStatus::Succeeded;
                    s.output = output;
                }
            }
            ProcessEvent::StepFailed {
                step,
                attempt,
                error,
                retry_at,
                ..
            } => {
                if let Some(s) = self.step_mut(&step) {
                    s.attempts = attempt;
                    s.in_doubt = false;
                    s.status = StepStatus::Retrying;
                    s.retry_at = retry_at;
                    s.last_error = Some(error);
                }
            }
            ProcessEvent::StepGaveUp { step, .. } => {
                if let Some(s) = self.step_mut(&step) {
                    s.status = StepStatus::GaveUp;
                    s.retry_at = None;
                }
            }
            ProcessEvent::StepSkipped { step, reason, .. } => {
                if let Some(s) = self.step_mut(&step) {
                    s.in_doubt = false;
                    s.status = StepStatus::Skipped;
                    s.last_error = Some(reason);
                }
            }
            ProcessEvent::StepPostponed { step, until, .. } => {
                if let Some(s) = self.step_mut(&step) {
                    s.status = StepStatus::Retrying;
                    s.retry_at = Some(until);
                }
            }
            ProcessEvent::StepReopened { step, .. } => {
                if let Some(s) = self.step_mut(&step) {
                    s.status = StepStatus::Pending;
                    s.attempts = 0;
                    s.retry_at = None;
                    s.in_doubt = false;
                    s.last_error = None;
                    s.output = serde_json::Value::Null;
                    s.round += 1;
                }
                self.completed = false;
            }
            ProcessEvent::ProcessCompleted { .. } => self.completed = true,
        }
    }
}

impl Aggregate for Process {
    const TYPE: &'static str = "process";
    type Command = ProcessCommand;
    type Event = ProcessEvent;
    type Error = ProcessError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = self.decide(command)?;
        write_all(self, sink, events).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.apply_event(event);
    }
}
