//! One run of a process instance: its steps that can run now, each outcome recorded in the
//! instance's stream with the instance's timer riding in the same append.

use std::sync::Arc;
use std::time::Duration;

use aggregates::process::{Process, ProcessCommand, StepState};
use eventlog::CommandMeta;
use tokio::sync::watch;

use super::work::{self, Timer};
use super::worker::WorkerStatus;
use super::{ProcessDefinition, StepContext, StepResult};
use crate::app::AppError;
use crate::state::AppState;

/// A process's own commands: idempotent by `key`, and correlated with the event that started
/// the instance (its correlation id, and its id as their cause).
fn meta(kind: &str, process: &Process, key: String, cause: Option<work::Cause>) -> CommandMeta {
    let mut meta = CommandMeta::new(format!("system:process:{kind}")).idempotency_key(key);
    if let Some(org) = process.organization_id {
        meta = meta.tenant(org);
    }
    if let Some(cause) = cause {
        meta = meta
            .correlation(cause.correlation_id)
            .causation(cause.event_id);
    }
    meta
}

/// Records one of the instance's commands; the append carries the instance's timer as it
/// will stand after the command (a side row, so the timer commits with the events). Answers
/// the new state and the timer written with it, if it was.
async fn record(
    state: &AppState,
    (kind, subject): (&str, &str),
    stream: &str,
    process: &Process,
    command: ProcessCommand,
    meta: &CommandMeta,
) -> Result<(Process, Option<Timer>), AppError> {
    let mut predicted = process.clone();
    let timer = match predicted.decide(command.clone()) {
        Ok(events) => {
            for event in events {
                cqrs_es::Aggregate::apply(&mut predicted, event);
            }
            Some(Timer::of(&predicted, state.clock.now()))
        }
        Err(_) => None,
    };
    let execute = state.processes.execute(stream, command.clone(), meta);
    let (executed, written) = match &timer {
        Some(timer) => {
            let row = work::timer_row(kind, subject, timer);
            eventlog::side::carrying(row, execute).await
        }
        None => (execute.await, false),
    };
    let executed = executed?;
    // Decided on other state than predicted (another writer came first): the timer written
    // is not this state's; the worker writes the right one at the end.
    let kept = (written && executed.state == predicted)
        .then_some(timer)
        .flatten();
    Ok((executed.state, kept))
}

/// Runs what an instance can run now, then writes its timer back unless its last append
/// carried it.
pub(super) async fn advance(
    definition: &dyn ProcessDefinition,
    state: &Arc<AppState>,
    status: &watch::Sender<WorkerStatus>,
    row: &work::Due,
) -> Result<(), AppError> {
    let kind = definition.kind();
    let stream = Process::stream_id(kind, &row.subject);
    // An instance not yet run has an empty stream: its first append carries its timer, so
    // its row is `pending`/`queued` only until then (see `work::timer_row`).
    let (mut process, _) = if row.fresh {
        state.processes.assume_new(&stream)
    } else {
        state.processes.load(&stream).await?
    };
    // The state the log holds: a start recorded together with outcomes is decided on it.
    let initial = process.clone();
    let instance = (kind, row.subject.as_str());
    let mut written: Option<Timer> = None;
    // A new instance's start is recorded with its first outcomes, in one append, unless a
    // first step must record its attempt before it runs (then the start goes first).
    let mut unrecorded_begin = None;
    if !process.started {
        let begin = ProcessCommand::Begin {
            kind: kind.to_string(),
            subject: row.subject.clone(),
            organization_id: row.organization_id,
            input: row.input.clone(),
            steps: definition.plan(&row.input, state.config.process_first_backoff_ms),
            at: state.clock.now(),
        };
        let mut begun = Process {
            organization_id: row.organization_id,
            ..Process::default()
        };
        let events = begun
            .decide(begin.clone())
            .map_err(|e| AppError::internal(format!("process {stream}: {e}")))?;
        for event in events {
            cqrs_es::Aggregate::apply(&mut begun, event);
        }
        let records_first = begun
            .runnable(state.clock.now())
            .iter()
            .any(|s| definition.records_attempts(&begun, &s.plan.name));
        if records_first {
            let meta = meta(kind, &begun, format!("{stream}:begin"), row.cause);
            (process, written) = record(state, instance, &stream, &initial, begin, &meta).await?;
        } else {
            unrecorded_begin = Some(begin);
            process = begun;
        }
    }
    loop {
        let now = state.clock.now();
        let runnable: Vec<StepState> = process.runnable(now).into_iter().cloned().collect();
        if runnable.is_empty() {
            break;
        }
        // Steps that may run together do (the seed's summary and extraction in parallel).
        let results = futures::future::join_all(
            runnable
                .iter()
                .map(|step| run_step(definition, state, &process, step, row.cause)),
        )
        .await;
        let mut outcomes = Vec::new();
        for (step, result) in runnable.iter().zip(results) {
            let (attempt, result) = result?;
            let name = step.plan.name.clone();
            let command = outcome(
                kind,
                &row.subject,
                &name,
                attempt,
                result,
                state.clock.now(),
            );
            // A postponement spends no attempt: its key names its time, so the attempt's real
            // outcome later is not taken for a repeat of it.
            let key = match &command {
                ProcessCommand::Postpone { until, .. } => format!(
                    "{stream}:{name}:{}:postponed:{}",
                    step.attempt_label(attempt),
                    until.timestamp_millis()
                ),
                _ => format!("{stream}:{name}:{}:outcome", step.attempt_label(attempt)),
            };
            outcomes.push((command, key));
        }
        let steps = outcomes.len() as u64;
        let before = process.clone();
        if let Some(begin) = unrecorded_begin.take() {
            let batch = std::iter::once(begin)
                .chain(outcomes.into_iter().map(|(command, _)| command))
                .collect();
            let meta = meta(kind, &process, format!("{stream}:begin"), row.cause);
            let batch = ProcessCommand::Batch(batch);
            (process, written) = record(state, instance, &stream, &initial, batch, &meta).await?;
        } else {
            for (command, key) in outcomes {
                let meta = meta(kind, &process, key, row.cause);
                (process, written) =
                    record(state, instance, &stream, &process, command, &meta).await?;
            }
        }
        status.send_modify(|s| s.steps_run += steps);
        // Outcomes that changed nothing (taken for repeats of recorded ones) would run the
        // same steps again at once: stop, and let the timer bring the instance back.
        if process == before {
            tracing::error!(%stream, "a step's outcome was not recorded; the instance waits");
            break;
        }
    }
    if let Some(begin) = unrecorded_begin {
        let meta = meta(kind, &process, format!("{stream}:begin"), row.cause);
        (process, written) = record(state, instance, &stream, &initial, begin, &meta).await?;
    }
    let timer = Timer::of(&process, state.clock.now());
    if written.as_ref() == Some(&timer) {
        return Ok(());
    }
    work::update(&state.store, kind, &row.subject, &timer)
        .await
        .map_err(AppError::from)
}

/// The command recording one attempt's result.
fn outcome(
    kind: &str,
    subject: &str,
    name: &str,
    attempt: u32,
    result: StepResult,
    at: chrono::DateTime<chrono::Utc>,
) -> ProcessCommand {
    let step = name.to_string();
    let counted = match &result {
        StepResult::Succeeded(_) => "succeeded",
        StepResult::Failed {
            retryable: true, ..
        } => "failed_retryable",
        StepResult::Failed { .. } => "failed",
        StepResult::Throttled { .. } => "throttled",
        StepResult::Skipped(_) => "skipped",
        StepResult::Postponed { .. } => "postponed",
    };
    metrics::counter!("process_steps_total", "process" => kind.to_string(),
        "step" => name.to_string(), "outcome" => counted)
    .increment(1);
    match result {
        StepResult::Succeeded(output) => ProcessCommand::Succeed { step, output, at },
        StepResult::Failed {
            error,
            retryable,
            detail,
        } => {
            tracing::warn!(process = kind, %subject, step = %name, attempt, %error, retryable, "process step failed");
            ProcessCommand::Fail {
                step,
                error,
                retryable,
                not_before: None,
                detail,
                at,
            }
        }
        StepResult::Throttled {
            error,
            at: until,
            detail,
        } => ProcessCommand::Fail {
            step,
            error,
            retryable: true,
            not_before: Some(until),
            detail,
            at,
        },
        StepResult::Skipped(reason) => ProcessCommand::Skip { step, reason, at },
        StepResult::Postponed { until, reason } => ProcessCommand::Postpone {
            step,
            until,
            reason,
            at,
        },
    }
}

/// One attempt of one step: records the attempt first when the step needs it, runs it
/// within its timeout, and answers the attempt's number with its result.
async fn run_step(
    definition: &dyn ProcessDefinition,
    state: &Arc<AppState>,
    process: &Process,
    step: &StepState,
    cause: Option<work::Cause>,
) -> Result<(u32, StepResult), AppError> {
    let kind = definition.kind();
    let stream = Process::stream_id(kind, &process.subject);
    let name = &step.plan.name;
    let attempt = if step.in_doubt {
        step.attempts
    } else {
        step.attempts + 1
    };
    if !step.in_doubt {
        let ctx = StepContext {
            state,
            process,
            step,
            now: state.clock.now(),
        };
        if let Some(answer) = definition.postpone(&ctx).await {
            return Ok((attempt, answer));
        }
    }
    if !step.in_doubt && definition.records_attempts(process, name) {
        let command = ProcessCommand::Attempt {
            step: name.clone(),
            at: state.clock.now(),
        };
        let key = format!("{stream}:{name}:{}:attempt", step.attempt_label(attempt));
        state
            .processes
            .execute(&stream, command, &meta(kind, process, key, cause))
            .await?;
    }
    let ctx = StepContext {
        state,
        process,
        step,
        now: state.clock.now(),
    };
    let timeout = Duration::from_millis(step.plan.policy.timeout_ms.max(1) as u64);
    let result = match tokio::time::timeout(timeout, definition.run(ctx)).await {
        Ok(result) => result,
        Err(_) => StepResult::retry(format!("timed out after {} ms", timeout.as_millis())),
    };
    Ok((attempt, result))
}
