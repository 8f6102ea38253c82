//! Call processing (the seed's Workflow 1), started by each call's `CallEnded`:
//! 1. `analysis`: VAPI's own analysis when the end report carries one, otherwise the LLM's
//!    summary and extraction, run in parallel; recorded on the call (`CallAnalyzed`).
//!    Without either source the step is skipped with its reason: nothing is invented.
//! 2. `notify` (after 1, whatever its outcome): the post-call summary, per the organization's
//!    settings, put in the call's stream (`NotificationsRequested`); the `notification`
//!    process sends each message.
//! 3. `close` (after 1 and 2): the call is marked processed (`CallProcessed`).
//!
//! 4. `recording` (beside 1): the provider's recording copied into our storage
//!    (`crate::recordings`), through the egress policy; the call notes the copy's key.
//!
//! Transcript, contact stats and usage are read models already.

use std::sync::Arc;

use aggregates::call::notify::{post_call_notifications, CallDigest};
use aggregates::call::{CallAnalysis, CallEvent, EndReport};
use aggregates::process::{RetryPolicy, StepPlan};
use async_trait::async_trait;
use eventlog::StoredEvent;
use projections::DomainEvent;
use serde_json::{json, Value};
use wire::llm::{parse_extraction, Extraction, EXTRACTION_PROMPT, SUMMARY_PROMPT};

use super::{ProcessDefinition, Start, StepContext, StepResult};
use crate::app::{self, Caller};
use crate::providers::llm::Llm;
use crate::state::AppState;

pub const KIND: &str = "call_processing";

pub struct CallProcessing {
    llm: Llm,
    /// Fetches recordings: the URL arrives in a delivery the organization can sign itself,
    /// so it is a customer URL (https, public addresses, no redirects).
    download: Option<reqwest::Client>,
}

impl CallProcessing {
    pub fn new(state: &Arc<AppState>) -> Self {
        CallProcessing {
            llm: Llm::new(&state.config, state.store.clone()),
            download: state
                .config
                .egress
                .client(std::time::Duration::from_secs(100))
                .ok(),
        }
    }
}

/// The seed's activity options: 2 minutes per attempt, 3 attempts, back-off ×2.
fn policy(first_backoff_ms: i64) -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        first_backoff_ms,
        factor: 2,
        timeout_ms: 120_000,
        ..RetryPolicy::default()
    }
}

/// What the call's stream says about how it ended.
struct Ended {
    report: Option<EndReport>,
    transcript: String,
}

fn ended(state: &AppState, events: &[StoredEvent]) -> Ended {
    let mut report = None;
    let mut lines = Vec::new();
    for stored in events {
        match state.calls.decode(stored) {
            Ok(CallEvent::CallEnded { report: r }) => report = Some(r),
            Ok(CallEvent::TranscriptSegmentAdded { segment }) => {
                lines.push((segment.at, format!("{}: {}", segment.role, segment.text)));
            }
            _ => {}
        }
    }
    lines.sort_by_key(|line| line.0);
    let from_segments = lines
        .into_iter()
        .map(|(_, line)| line)
        .collect::<Vec<_>>()
        .join("\n");
    let transcript = report
        .as_ref()
        .and_then(|r| r.transcript.clone())
        .filter(|t| !t.trim().is_empty())
        .unwrap_or(from_segments);
    Ended { report, transcript }
}

impl CallProcessing {
    /// The extraction, asked once more when the answer is not valid: then the step fails
    /// for good (a third ask of the same question is not going to differ).
    async fn extract(&self, transcript: &str, org: &str) -> Result<Option<Extraction>, StepResult> {
        let mut last = String::new();
        for _ in 0..2 {
            match self
                .llm
                .complete(EXTRACTION_PROMPT, transcript, true, org)
                .await
            {
                Ok(None) => return Ok(None),
                Ok(Some(text)) => match parse_extraction(&text) {
                    Ok(extraction) => return Ok(Some(extraction)),
                    Err(err) => last = err,
                },
                Err(err) => return Err(StepResult::from_provider(err)),
            }
        }
        Err(StepResult::give_up(format!(
            "the LLM's extraction was invalid twice: {last}"
        )))
    }

    async fn analysis(&self, ctx: &StepContext<'_>, caller: &Caller, call_id: &str) -> StepResult {
        let (_, events) = match app::calls::load(ctx.state, caller, call_id).await {
            Ok(loaded) => loaded,
            Err(err) => return err.into(),
        };
        let Ended { report, transcript } = ended(ctx.state, &events);
        let org = caller.organization_id.to_string();
        let vapi_summary = report
            .as_ref()
            .and_then(|r| r.summary.clone())
            .filter(|s| !s.trim().is_empty());
        // VAPI's structured data, when it holds the extraction's fields.
        let vapi_extraction = report
            .as_ref()
            .filter(|r| r.structured_data.is_object())
            .and_then(|r| parse_extraction(&r.structured_data.to_string()).ok());
        let has_transcript = !transcript.trim().is_empty();
        let (summary, extraction, source) = match (vapi_summary, vapi_extraction) {
            (Some(summary), Some(extraction)) => (summary, Some(extraction), "vapi"),
            (Some(summary), None) if has_transcript => {
                match self.extract(&transcript, &org).await {
                    Ok(Some(extraction)) => (summary, Some(extraction), "vapi+llm"),
                    Ok(None) => (summary, None, "vapi"),
                    Err(failed) => return failed,
                }
            }
            (Some(summary), None) => (summary, None, "vapi"),
            (None, _) if !has_transcript => {
                return StepResult::Skipped(
                    "no analysis: the end-of-call report has no summary and the call no \
                     transcript"
                        .into(),
                )
            }
            (None, _) => {
                let (summary, extraction) = tokio::join!(
                    self.llm.complete(SUMMARY_PROMPT, &transcript, false, &org),
                    self.extract(&transcript, &org),
                );
                let summary = match summary {
                    Ok(Some(summary)) => summary,
                    Ok(None) => {
                        return StepResult::Skipped(
                            "no analysis: the end-of-call report has none and the LLM runs in \
                             sandbox mode (set LLM_API_KEY)"
                                .into(),
                        )
                    }
                    Err(err) => return StepResult::from_provider(err),
                };
                match extraction {
                    Ok(extraction) => (summary, extraction, "llm"),
                    Err(failed) => return failed,
                }
            }
        };
        let analysis = CallAnalysis {
            summary,
            call_type: extraction.as_ref().map(|e| e.call_type.clone()),
            sentiment: extraction.as_ref().map(|e| e.sentiment.clone()),
            caller_name: extraction.as_ref().and_then(|e| e.caller_name.clone()),
            action_items: extraction
                .as_ref()
                .map(|e| e.action_items.clone())
                .unwrap_or_default(),
            urgency: extraction.as_ref().map(|e| e.urgency.clone()),
            source: Some(source.to_string()),
            at: ctx.now,
        };
        let output = serde_json::to_value(&analysis).unwrap_or(Value::Null);
        match app::calls::record_analysis(ctx.state, caller, call_id, &ctx.key("analyze"), analysis)
            .await
        {
            Ok(_) => StepResult::Succeeded(output),
            Err(err) => err.into(),
        }
    }

    async fn recording(&self, ctx: &StepContext<'_>, caller: &Caller, call_id: &str) -> StepResult {
        // The end report, applied, carries the recording (if there is one).
        let ended = |call: &aggregates::call::Call| call.ended;
        let call = match app::calls::owned_settled(ctx.state, caller, call_id, ended).await {
            Ok(call) => call,
            Err(err) => return err.into(),
        };
        let Some(source) = call.recording_url.clone() else {
            return StepResult::Skipped("the call has no recording".into());
        };
        if let Some(key) = &call.recording_stored_path {
            return StepResult::Succeeded(json!({ "key": key }));
        }
        let url = match ctx.state.config.egress.check_url(&source) {
            Ok(url) => url,
            Err(err) => return StepResult::give_up(format!("recording URL refused: {err}")),
        };
        let Some(client) = &self.download else {
            return StepResult::give_up("no HTTP client for recordings");
        };
        let mut response = match client.get(url).send().await {
            Ok(response) => response,
            Err(err) => return StepResult::retry(format!("recording download failed: {err}")),
        };
        let status = response.status();
        if !status.is_success() {
            let error = format!("the recording's host answered {status}");
            return if status.is_server_error() || status.as_u16() == 429 {
                StepResult::retry(error)
            } else {
                StepResult::give_up(error)
            };
        }
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > crate::recordings::MAX_BYTES {
                        return StepResult::give_up(format!(
                            "the recording is larger than {} bytes; it stays at the provider",
                            crate::recordings::MAX_BYTES
                        ));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(err) => return StepResult::retry(format!("recording download failed: {err}")),
            }
        }
        let size = bytes.len();
        let key = crate::recordings::key(&caller.organization_id.to_string(), call_id, &source);
        if let Err(err) = ctx.state.recordings.put(&key, bytes.into()).await {
            return StepResult::retry(format!("storing the recording failed: {err}"));
        }
        match app::calls::record_recording(
            ctx.state,
            caller,
            call_id,
            &ctx.key("stored"),
            source,
            key.clone(),
            ctx.now,
        )
        .await
        {
            Ok(_) => StepResult::Succeeded(json!({ "key": key, "bytes": size })),
            Err(err) => err.into(),
        }
    }

    async fn notify(&self, ctx: &StepContext<'_>, caller: &Caller, call_id: &str) -> StepResult {
        let organization = match app::organizations::load_recent(ctx.state, caller).await {
            Ok(organization) => organization,
            Err(err) => return err.into(),
        };
        let (call, events) = match app::calls::load(ctx.state, caller, call_id).await {
            Ok(loaded) => loaded,
            Err(err) => return err.into(),
        };
        let report = ended(ctx.state, &events).report;
        let analysis = ctx.output_of("analysis");
        let text = |key: &str| {
            analysis
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let digest = CallDigest {
            from_number: call.from_number.clone(),
            duration_seconds: report.and_then(|r| r.duration_seconds),
            summary: text("summary"),
            call_type: text("call_type"),
        };
        let notifications = post_call_notifications(&organization.settings.notifications, &digest);
        if notifications.is_empty() {
            return StepResult::Skipped("no post-call notification is enabled".into());
        }
        let count: usize = notifications.iter().map(|n| n.recipients.len()).sum();
        match app::calls::request_notifications(
            ctx.state,
            caller,
            call_id,
            &ctx.key("request"),
            "post_call_summary",
            notifications,
            ctx.now,
        )
        .await
        {
            Ok(_) => StepResult::Succeeded(json!({ "notifications": count })),
            Err(err) => err.into(),
        }
    }
}

#[async_trait]
impl ProcessDefinition for CallProcessing {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn consumer(&self) -> &'static str {
        "process:call_processing"
    }

    fn wants(&self, event: &DomainEvent) -> bool {
        matches!(event, DomainEvent::Call(CallEvent::CallEnded { .. }))
    }

    fn starts(&self, stored: &StoredEvent, event: &DomainEvent) -> Vec<Start> {
        if !self.wants(event) {
            return Vec::new();
        }
        let organization_id = stored
            .metadata
            .tenant_id
            .as_deref()
            .and_then(|t| uuid::Uuid::parse_str(t).ok());
        if organization_id.is_none() {
            return Vec::new();
        }
        vec![Start::new(
            stored.aggregate_id.clone(),
            organization_id,
            json!({ "call_id": stored.aggregate_id }),
        )]
    }

    fn plan(&self, _input: &Value, first_backoff_ms: i64) -> Vec<StepPlan> {
        let policy = policy(first_backoff_ms);
        vec![
            StepPlan::new("analysis", policy.clone()),
            StepPlan::new("notify", policy.clone()).after(&["analysis"]),
            StepPlan::new("recording", policy.clone()),
            StepPlan::new("close", policy).after(&["analysis", "notify", "recording"]),
        ]
    }

    async fn run(&self, ctx: StepContext<'_>) -> StepResult {
        let Some(caller) = ctx.caller() else {
            return StepResult::give_up("the process has no organization");
        };
        let Some(call_id) = ctx.input()["call_id"].as_str().map(str::to_string) else {
            return StepResult::give_up("the process input names no call");
        };
        match ctx.step.plan.name.as_str() {
            "analysis" => self.analysis(&ctx, &caller, &call_id).await,
            "notify" => self.notify(&ctx, &caller, &call_id).await,
            "recording" => self.recording(&ctx, &caller, &call_id).await,
            "close" => {
                match app::calls::close(ctx.state, &caller, &call_id, &ctx.key("close"), ctx.now)
                    .await
                {
                    Ok(_) => StepResult::Succeeded(Value::Null),
                    Err(err) => err.into(),
                }
            }
            other => StepResult::give_up(format!("unknown step {other}")),
        }
    }
}
