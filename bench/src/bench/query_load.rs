//! The query section's big data set, loaded the way production gets it: every call's commands
//! are decided by the real `Call` aggregate (its pure `decide`, one command at a time on the
//! state so far), the events go into the log with `COPY` (one transaction per organization:
//! the fastest honest way to write millions of events), and the read models are then built
//! from the log by `projections::rebuild::rebuild_all` — the time that takes is the
//! "time to project them" the section reports.

use std::time::{Duration, Instant};

use aggregates::call::{
    functions, Call, CallAnalysis, CallCommand, CallContext, CallStatus, Direction, EndReport,
    FunctionInvocation, TranscriptSegment,
};
use chrono::{DateTime, Utc};
use eventlog::{EventStore, NewEvent};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::Connection;
use uuid::Uuid;

use crate::query::{org_settings, ENDED_REASONS, GREETING, RARE, SENTENCES};
use crate::rebuild::decide_stream;

const DAY_MS: i64 = 86_400_000;
/// Bytes of COPY data sent per message.
const COPY_CHUNK: usize = 4 << 20;

/// What loading and projecting the data set took.
pub struct LogLoad {
    pub calls: u64,
    pub events: u64,
    pub load_time: Duration,
    pub project_time: Duration,
    /// Per projector: (name, time spent applying batches).
    pub apply_times: Vec<(&'static str, Duration)>,
}

fn at_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// One bulk call's commands with the time each was received: 96% ended (10 ended reasons),
/// the rest left ringing, queued or in progress; 4-6 transcript lines (0.3% mention the rare
/// word); 0-2 tool calls through the seed's functions; an analysis for ended calls.
fn bulk_commands(
    org: Uuid,
    org_index: usize,
    n: usize,
    start_ms: i64,
    rng: &mut StdRng,
) -> Vec<(CallCommand, DateTime<Utc>)> {
    let vapi_id = format!("bulk-{org_index}-{n}");
    let direction = match rng.gen_range(0..100) {
        0..=89 => Direction::Inbound,
        90..=96 => Direction::Outbound,
        _ => Direction::Web,
    };
    let ctx = CallContext {
        organization_id: org,
        vapi_call_id: vapi_id.clone(),
        from_number: Some(format!(
            "+1{}",
            2_000_000_000u64 + org_index as u64 * 1_000 + rng.gen_range(0..1_000u64)
        )),
        to_number: Some("+15559990000".into()),
        direction,
        phone_number_id: Some(format!("pn-{}", n % 3)),
        assistant_id: Some("asst-bench".into()),
        provider_call_id: Some(format!("CA{vapi_id}")),
        started_at: Some(at_ms(start_ms)),
    };
    let mut t = start_ms;
    let mut out = vec![(
        CallCommand::Start {
            ctx: ctx.clone(),
            at: at_ms(t),
        },
        at_ms(t),
    )];
    let fate: u32 = rng.gen_range(0..100);
    let status = match fate {
        98 => CallStatus::Ringing,
        99 => CallStatus::Queued,
        _ => CallStatus::InProgress,
    };
    t += 1_000;
    out.push((
        CallCommand::UpdateStatus {
            ctx: ctx.clone(),
            status,
            ended_reason: None,
            at: at_ms(t),
        },
        at_ms(t),
    ));
    if fate >= 98 {
        return out;
    }
    let settings = org_settings();
    let lines = 4 + n % 3;
    let actions: &[&str] = match rng.gen_range(0..5) {
        0 => &["takeMessage"],
        1 => &["transferCall"],
        2 => &["logDriverCallout"],
        3 => &["takeMessage", "transferCall"],
        _ => &[],
    };
    for i in 0..lines {
        t += 4_000;
        let text = if i == 0 {
            GREETING.to_string()
        } else if i == 1 && rng.gen_range(0..1_000) < 3 {
            RARE.to_string()
        } else {
            SENTENCES[rng.gen_range(0..SENTENCES.len())].to_string()
        };
        out.push((
            CallCommand::AddTranscript {
                ctx: ctx.clone(),
                segment: TranscriptSegment {
                    key: format!("seg-{i:05}"),
                    role: if i % 2 == 0 { "assistant" } else { "user" }.into(),
                    text,
                    at: at_ms(t),
                    seconds_from_start: Some(((t - start_ms) / 1_000) as f64),
                },
            },
            at_ms(t),
        ));
        if let Some(name) = actions.get(i.saturating_sub(1)).filter(|_| i >= 1) {
            let args = match *name {
                "takeMessage" => json!({"callerName": "Pat",
                    "message": "Please call me back about invoice 1182", "urgent": false}),
                "transferCall" => json!({"destination": "dispatch", "reason": "load question"}),
                _ => json!({"driverName": "Sam Miller", "reason": "sick", "routeNumber": "12"}),
            };
            let args = args.as_object().cloned().unwrap_or_default();
            let decided = functions::decide(name, &args, &settings);
            t += 500;
            out.push((
                CallCommand::HandleFunctionCall {
                    ctx: ctx.clone(),
                    invocation: FunctionInvocation {
                        tool_call_id: format!("tc-{vapi_id}-{i}"),
                        name: name.to_string(),
                        arguments: Value::Object(args),
                        action: decided.action,
                        reply: decided.reply,
                        at: at_ms(t),
                        notifications: decided.notifications,
                    },
                },
                at_ms(t),
            ));
        }
    }
    if fate >= 96 {
        return out; // still in progress
    }
    if rng.gen_range(0..10) < 3 {
        t += 1_000;
        out.push((
            CallCommand::Hang {
                ctx: ctx.clone(),
                at: at_ms(t),
            },
            at_ms(t),
        ));
    }
    let r: f64 = rng.gen();
    let duration = (15.0 + 600.0 * r * r).round();
    let ended = start_ms + (duration * 1_000.0) as i64;
    out.push((
        CallCommand::End {
            ctx: ctx.clone(),
            report: EndReport {
                ended_reason: Some(ENDED_REASONS[rng.gen_range(0..ENDED_REASONS.len())].into()),
                started_at: Some(at_ms(start_ms)),
                ended_at: Some(at_ms(ended)),
                duration_seconds: Some(duration),
                cost: Some(0.02 + duration / 60.0 * 0.11),
                cost_breakdown: json!({"llm": 0.02, "stt": 0.01, "tts": 0.015}),
                transcript: None,
                messages: json!([]),
                recording_url: Some(format!("https://storage.vapi.test/{vapi_id}.wav")),
                stereo_recording_url: None,
                summary: Some("Caller left a message for dispatch.".into()),
                structured_data: json!({"route": "12"}),
                success_evaluation: Some(if r < 0.8 { "true" } else { "false" }.into()),
                at: at_ms(ended + 2_000),
            },
        },
        at_ms(ended + 2_000),
    ));
    const TYPES: [&str; 4] = ["driver_callout", "billing", "dispatch", "general"];
    const SENTIMENTS: [&str; 4] = ["positive", "neutral", "neutral", "negative"];
    out.push((
        CallCommand::Analyze {
            ctx,
            analysis: CallAnalysis {
                summary: "Caller left a message for dispatch.".into(),
                call_type: Some(TYPES[rng.gen_range(0..TYPES.len())].into()),
                sentiment: Some(SENTIMENTS[rng.gen_range(0..SENTIMENTS.len())].into()),
                caller_name: (rng.gen_range(0..2) == 0).then(|| format!("Driver {}", n % 97)),
                action_items: vec!["Call the caller back".into()],
                urgency: None,
                source: Some("llm".into()),
                at: at_ms(ended + 30_000),
            },
        },
        at_ms(ended + 30_000),
    ));
    out
}

/// Escapes one value for COPY's text format.
fn copy_text(out: &mut String, value: &str) {
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            other => out.push(other),
        }
    }
}

/// One `events` row in COPY text format (the columns `EventStore::append` writes).
fn copy_row(out: &mut String, id: &str, sequence: i64, event: &NewEvent) -> anyhow::Result<()> {
    let meta = &event.metadata;
    let fields: [Option<String>; 13] = [
        Some("call".into()),
        Some(id.to_string()),
        Some(sequence.to_string()),
        Some(event.event_type.clone()),
        Some(event.event_version.to_string()),
        Some(serde_json::to_string(&event.payload)?),
        Some(meta.event_id.to_string()),
        Some(meta.correlation_id.to_string()),
        meta.causation_id.map(|c| c.to_string()),
        Some(meta.actor.clone()),
        meta.tenant_id.clone(),
        Some(meta.received_at.timestamp_millis().to_string()),
        Some(serde_json::to_string(
            &json!({"received_at": meta.received_at, "extra": meta.extra}),
        )?),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        match field {
            Some(value) => copy_text(out, value),
            None => out.push_str("\\N"),
        }
    }
    out.push('\n');
    Ok(())
}

/// Writes `n` calls of organization `org` (index `org_index`) to the log in one COPY.
async fn load_org(
    conn: &mut sqlx::postgres::PgConnection,
    org: Uuid,
    org_index: usize,
    n: usize,
    now_ms: i64,
) -> anyhow::Result<u64> {
    let mut rng = StdRng::seed_from_u64(org_index as u64);
    let mut copy = conn
        .copy_in_raw(
            "COPY events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, event_id, correlation_id, causation_id, actor, tenant_id, recorded_at, \
             metadata) FROM STDIN",
        )
        .await?;
    let mut buffer = String::with_capacity(COPY_CHUNK + 64 * 1024);
    let mut events = 0u64;
    for k in 0..n {
        let start = now_ms - rng.gen_range(0..90 * DAY_MS);
        let commands = bulk_commands(org, org_index, k, start, &mut rng);
        let actor = format!("provider:vapi:bulk-{org_index}-{k}");
        let decided = decide_stream::<Call, _>(commands, org, &actor, |s, c| s.decide(c))?;
        let id = callflex::webhooks::vapi::call_id(org, &format!("bulk-{org_index}-{k}"));
        for (i, event) in decided.iter().enumerate() {
            copy_row(&mut buffer, &id, i as i64 + 1, event)?;
        }
        events += decided.len() as u64;
        if buffer.len() >= COPY_CHUNK {
            copy.send(buffer.as_bytes()).await?;
            buffer.clear();
        }
    }
    if !buffer.is_empty() {
        copy.send(buffer.as_bytes()).await?;
    }
    copy.finish().await?;
    Ok(events)
}

/// Loads `plan` (organization, calls) into the log at `url`, then builds every read model
/// from it with `rebuild_all`.
pub async fn load_and_project(
    url: &str,
    plan: &[(Uuid, usize)],
    now_ms: i64,
) -> anyhow::Result<LogLoad> {
    let mut conn = sqlx::postgres::PgConnection::connect(url).await?;
    let started = Instant::now();
    let mut events = 0u64;
    for (org_index, (org, n)) in plan.iter().enumerate() {
        events += load_org(&mut conn, *org, org_index, *n, now_ms).await?;
    }
    sqlx::query("ANALYZE events").execute(&mut conn).await?;
    let load_time = started.elapsed();
    conn.close().await?;

    let store = EventStore::open(url, 10).await?;
    let handles: Vec<_> = projections::all()
        .into_iter()
        .map(|p| projections::ProjectorRunner::new(store.clone(), p).handle())
        .collect();
    let started = Instant::now();
    let reports = projections::rebuild::rebuild_all(&store, &handles).await?;
    let project_time = started.elapsed();
    store.pool().close().await;
    Ok(LogLoad {
        calls: plan.iter().map(|(_, n)| *n as u64).sum(),
        events,
        load_time,
        project_time,
        apply_times: reports
            .iter()
            .map(|(r, _)| (r.projector, r.apply_time))
            .collect(),
    })
}
