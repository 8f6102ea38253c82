//! Section `command`: the cost of one command must not grow with the stream's length.
//! Commands #1..#10 vs #491..#500 of `CallCommand::AddTranscript` on one call stream through
//! `AggregateRepository<Call>`, with snapshots every 50 (as the service runs) and without.

use std::time::Instant;

use aggregates::call::{Call, CallCommand, CallContext, Direction, TranscriptSegment};
use chrono::{TimeZone, Utc};
use eventlog::{AggregateRepository, CommandMeta, EventStore};
use serde_json::json;
use uuid::Uuid;

use crate::report::{Baseline, Row, Samples, Section, Target};
use crate::Ctx;

const COMMANDS: u64 = 500;
const WINDOW: u64 = 10;

const LINES: [&str; 6] = [
    "Thanks for calling Acme Trucking, how can I help you today?",
    "Hi, this is Sam, I drive route 12 and I won't make it in tomorrow.",
    "I'm sorry to hear that. Can I get your full name and route number?",
    "Sam Miller, route 12. I should be back on Monday.",
    "Got it. I'll let dispatch know right away. Anything else?",
    "No, that's all, thanks.",
];

pub fn context(org: Uuid, vapi_call_id: &str) -> CallContext {
    CallContext {
        organization_id: org,
        vapi_call_id: vapi_call_id.to_string(),
        from_number: Some("+15551230000".into()),
        to_number: Some("+15559990000".into()),
        direction: Direction::Inbound,
        phone_number_id: Some("pn-bench".into()),
        assistant_id: Some("asst-bench".into()),
        provider_call_id: Some(format!("CA{vapi_call_id}")),
        started_at: Utc.timestamp_opt(1_749_546_000, 0).single(),
    }
}

pub fn segment(n: u64) -> TranscriptSegment {
    TranscriptSegment {
        key: format!("seg-{n:05}"),
        role: if n.is_multiple_of(2) {
            "assistant"
        } else {
            "user"
        }
        .into(),
        text: LINES[(n % LINES.len() as u64) as usize].into(),
        at: Utc
            .timestamp_opt(1_749_546_000 + n as i64 * 3, 0)
            .single()
            .unwrap_or_default(),
        seconds_from_start: Some(n as f64 * 3.0),
    }
}

struct Windows {
    first: Samples,
    last: Samples,
    streams: usize,
    state_matches_replay: bool,
}

async fn measure(
    repo: &AggregateRepository<Call>,
    org: Uuid,
    streams: usize,
) -> anyhow::Result<Windows> {
    let mut out = Windows {
        first: Samples::default(),
        last: Samples::default(),
        streams,
        state_matches_replay: true,
    };
    let meta = CommandMeta::new("system:bench").tenant(org);
    for s in 0..streams {
        let vapi_id = format!("cmd-{}-{s}", Uuid::new_v4().simple());
        let id = Uuid::new_v4().to_string();
        let ctx = context(org, &vapi_id);
        for n in 1..=COMMANDS {
            let command = CallCommand::AddTranscript {
                ctx: ctx.clone(),
                segment: segment(n),
            };
            let t = Instant::now();
            repo.execute(&id, command, &meta)
                .await
                .map_err(|e| anyhow::anyhow!("command {n} on {id}: {e}"))?;
            let elapsed = t.elapsed();
            if n <= WINDOW {
                out.first.push(elapsed);
            } else if n > COMMANDS - WINDOW {
                out.last.push(elapsed);
            }
        }
        let (loaded, _) = repo.load(&id).await?;
        let (replayed, _) = repo.replay(&id).await?;
        out.state_matches_replay &=
            serde_json::to_value(&loaded)? == serde_json::to_value(&replayed)?;
    }
    Ok(out)
}

fn rows(section: &mut Section, label: &str, w: &Windows, target: Option<Target>) {
    for (pct, name) in [(50.0, "median"), (99.0, "p99")] {
        let mut row = Row::num(
            format!("{label}: {name} of commands #491-500"),
            w.last.pct_ms(pct),
            "ms",
        )
        .vs(Baseline::new(
            format!("{name} of commands #1-10"),
            w.first.pct_ms(pct),
            "ms",
        ))
        .detail(json!({
            "streams": w.streams,
            "first_10": w.first.summary(),
            "last_10": w.last.summary(),
            "loaded_state_equals_replayed_state": w.state_matches_replay,
        }));
        if pct == 50.0 {
            if let Some(target) = target {
                row = row.target(target);
            }
        }
        section.row(row);
    }
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let streams = if ctx.quick { 4 } else { 10 };
    let mut section = Section::new(
        "command",
        format!(
            "AggregateRepository<Call>, AddTranscript, {streams} streams x {COMMANDS} commands, \
             PostgreSQL"
        ),
    );
    let url = ctx.fresh_postgres("command").await?;
    let store = EventStore::open(&url, 4).await?;
    let org = Uuid::new_v4();

    // Warm-up: connections, prepared statements, page cache.
    let warm = AggregateRepository::<Call>::new(store.clone(), ()).with_snapshots(50, 1);
    let warm_ctx = context(org, "warm-up");
    let meta = CommandMeta::new("system:bench").tenant(org);
    for n in 1..=60 {
        let command = CallCommand::AddTranscript {
            ctx: warm_ctx.clone(),
            segment: segment(n),
        };
        warm.execute("warm-up", command, &meta)
            .await
            .map_err(|e| anyhow::anyhow!("warm-up: {e}"))?;
    }

    let with = AggregateRepository::<Call>::new(store.clone(), ()).with_snapshots(50, 1);
    let with = measure(&with, org, streams).await?;
    rows(
        &mut section,
        "snapshots every 50",
        &with,
        Some(Target::RatioAtMost(1.2)),
    );
    let without = AggregateRepository::<Call>::new(store.clone(), ()).with_snapshots(0, 1);
    let without = measure(&without, org, streams).await?;
    rows(&mut section, "snapshots off", &without, None);
    section.row(
        Row::text(
            "snapshot + tail state == full replay (every stream)",
            if with.state_matches_replay {
                "MATCH"
            } else {
                "DIFF"
            },
        )
        .target(Target::Match),
    );
    section.note(format!(
        "each sample is one execute(): load (snapshot row + events after it), decide, append in \
         one transaction; {} samples per window (#1-10 and #491-500 of every stream); command #1 \
         also writes CallStarted",
        streams as u64 * WINDOW
    ));
    section.note(
        "the service runs with snapshots every 50 (src/state.rs); 'snapshots off' shows the \
         cost of replaying the whole stream on every command",
    );
    Ok(section)
}
