//! Section `ingest`: the real service (in-process, PostgreSQL) receiving signed VAPI deliveries
//! over real HTTP for realistic calls at 1, 16 and 64 concurrent calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregates::organization::{
    NotificationSettings, OrganizationCommand, OrganizationSettings, TransferNumbers,
};
use callflex::config::{Config, Secret};
use callflex::startup::Application;
use eventlog::CommandMeta;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::report::{Baseline, Row, Samples, Section, Target};
use crate::{Ctx, RawBaseline};

const SECRET: &str = "bench";
const LEVELS: [usize; 3] = [1, 16, 64];
const TRANSCRIPTS: usize = 10;
/// Interval between two deliveries of one call in the paced run.
const PACE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Status,
    Transcript,
    ToolCall,
    EndReport,
}

const LINES: [&str; 5] = [
    "Thanks for calling Acme Trucking, this is the dispatch line.",
    "Hi, I need to leave a message for the billing department.",
    "Of course. What's your name and the message?",
    "It's Pat from Northside Foods, please call me back about invoice 1182.",
    "I'll pass that on right away. Anything else I can help with?",
];

fn envelope(kind: &str, call_id: &str, ts: i64, extra: Value) -> String {
    let mut message = json!({
        "type": kind,
        "timestamp": ts,
        "call": {
            "id": call_id,
            "type": "inboundPhoneCall",
            "customer": { "number": "+15551230000" },
            "phoneCallProviderId": format!("CA{call_id}"),
        },
        "phoneNumber": { "number": "+15559990000" },
    });
    if let (Some(m), Some(e)) = (message.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    json!({ "message": message }).to_string()
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One realistic call: status-update, final transcripts with a takeMessage tool call midway,
/// end-of-call report.
fn call_script(call_id: &str) -> Vec<(Kind, String)> {
    let t0 = chrono::Utc::now().timestamp_millis();
    let mut out = vec![(
        Kind::Status,
        envelope(
            "status-update",
            call_id,
            t0,
            json!({"status": "in-progress"}),
        ),
    )];
    for i in 0..TRANSCRIPTS {
        let ts = t0 + 1_000 + i as i64 * 2_500;
        out.push((
            Kind::Transcript,
            envelope(
                "transcript",
                call_id,
                ts,
                json!({"role": if i.is_multiple_of(2) { "assistant" } else { "user" },
                       "transcriptType": "final",
                       "transcript": LINES[i % LINES.len()]}),
            ),
        ));
        if i == TRANSCRIPTS / 2 {
            out.push((
                Kind::ToolCall,
                envelope(
                    "tool-calls",
                    call_id,
                    ts + 500,
                    json!({"toolCallList": [{
                        "id": format!("tc-{call_id}"),
                        "type": "function",
                        "function": {"name": "takeMessage", "arguments": {
                            "callerName": "Pat",
                            "message": "Please call me back about invoice 1182",
                            "urgent": false,
                        }},
                    }]}),
                ),
            ));
        }
    }
    let end = t0 + 1_000 + TRANSCRIPTS as i64 * 2_500 + 2_000;
    out.push((
        Kind::EndReport,
        envelope(
            "end-of-call-report",
            call_id,
            end + 500,
            json!({"endedReason": "customer-ended-call", "startedAt": iso(t0), "endedAt": iso(end),
                   "cost": 0.31,
                   "costs": [{"type": "model", "cost": 0.12}, {"type": "transcriber", "cost": 0.05}],
                   "artifact": {"transcript": "AI: Thanks for calling Acme Trucking\nUser: Hi",
                                "recordingUrl": format!("https://storage.vapi.test/{call_id}.wav"),
                                "messages": []},
                   "analysis": {"summary": "Pat left a message for billing.",
                                "successEvaluation": true}}),
        ),
    ));
    out
}

#[derive(Default)]
struct LevelRun {
    all: Samples,
    tool: Samples,
    /// Tool-call time inside the service, from its `Server-Timing` header.
    tool_server: Samples,
    deliveries: u64,
    calls_completed: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
}

/// Sends one delivery; returns the answer and the service's own time (`Server-Timing`).
async fn send(
    client: &reqwest::Client,
    url: &str,
    body: String,
) -> Result<(String, Option<Duration>), String> {
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-vapi-secret", SECRET)
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status();
    let inside = res
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("dur=").nth(1))
        .and_then(|ms| ms.trim().parse::<f64>().ok())
        .map(|ms| Duration::from_secs_f64(ms / 1e3));
    let text = res.text().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok((text, inside))
    } else {
        Err(format!("HTTP {status}: {text}"))
    }
}

/// Plays calls on `concurrency` workers for `run_for`. Without `pace` each worker sends its
/// next delivery as soon as the previous one is answered (closed loop, saturation); with
/// `pace` each call sends one delivery per `pace`, workers staggered across the interval.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    concurrency: usize,
    run_for: Duration,
    pace: Option<Duration>,
    tag: &str,
) -> LevelRun {
    let shared = Arc::new(Mutex::new(LevelRun::default()));
    let started = Instant::now();
    let deadline = started + run_for;
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let client = client.clone();
        let url = url.to_string();
        let shared = shared.clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut local = LevelRun::default();
            let mut next = tokio::time::Instant::now();
            if let Some(pace) = pace {
                next += pace.mul_f64(w as f64 / concurrency as f64);
            }
            'calls: for k in 0.. {
                let call_id = format!("{tag}-{w}-{k}");
                // Paced workers start their first call at different points of the script so
                // every kind of delivery is sampled from the start (a call whose first
                // delivery is not the status update is still created).
                let skip = match (pace, k) {
                    (Some(_), 0) => w % (TRANSCRIPTS + 3),
                    _ => 0,
                };
                for (kind, body) in call_script(&call_id).into_iter().skip(skip) {
                    if let Some(pace) = pace {
                        tokio::time::sleep_until(next).await;
                        next += pace;
                    }
                    if Instant::now() >= deadline {
                        break 'calls;
                    }
                    let t = Instant::now();
                    let result = send(&client, &url, body).await;
                    let took = t.elapsed();
                    match result {
                        Ok((answer, inside)) => {
                            local.deliveries += 1;
                            local.all.push(took);
                            if kind == Kind::ToolCall {
                                local.tool.push(took);
                                if let Some(inside) = inside {
                                    local.tool_server.push(inside);
                                }
                                if !answer.contains("\"results\"") {
                                    local.errors += 1;
                                    local.first_error.get_or_insert(format!(
                                        "unexpected tool-call answer: {answer}"
                                    ));
                                }
                            }
                            if kind == Kind::EndReport {
                                local.calls_completed += 1;
                            }
                        }
                        Err(err) => {
                            local.errors += 1;
                            local.first_error.get_or_insert(err);
                        }
                    }
                }
            }
            let mut total = shared.lock().await;
            total.deliveries += local.deliveries;
            total.calls_completed += local.calls_completed;
            total.errors += local.errors;
            if total.first_error.is_none() {
                total.first_error = local.first_error;
            }
            total.all.extend(local.all);
            total.tool.extend(local.tool);
            total.tool_server.extend(local.tool_server);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    let mut run = std::mem::take(&mut *shared.lock().await);
    run.elapsed = elapsed;
    run
}

/// A `/proc/self/status` figure in MiB (`VmHWM`, `VmRSS`).
fn proc_status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets the peak-RSS mark (Linux: "5" > /proc/self/clear_refs) so earlier sections do not
/// count towards the service's peak.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

async fn create_org(app: &Application) -> anyhow::Result<Uuid> {
    let org = Uuid::new_v4();
    let meta = CommandMeta::new("system:bench").tenant(org);
    let state = app.state();
    state
        .organizations
        .execute(
            &org.to_string(),
            OrganizationCommand::Create {
                id: org,
                name: "Acme Trucking (bench)".into(),
                owner_user_id: "bench-owner".into(),
                owner_email: "owner@acme.test".into(),
                actor: "system:bench".into(),
            },
            &meta,
        )
        .await
        .map_err(|e| anyhow::anyhow!("create organization: {e}"))?;
    state
        .organizations
        .execute(
            &org.to_string(),
            OrganizationCommand::UpdateSettings {
                settings: OrganizationSettings {
                    notifications: NotificationSettings {
                        sms_enabled: true,
                        sms_numbers: vec!["+15550001111".into()],
                        ..Default::default()
                    },
                    transfer_numbers: TransferNumbers {
                        dispatch: Some("+15550002222".into()),
                        manager: Some("+15550003333".into()),
                        emergency: Some("+15550004444".into()),
                    },
                    ..Default::default()
                },
                actor: "system:bench".into(),
            },
            &meta,
        )
        .await
        .map_err(|e| anyhow::anyhow!("update settings: {e}"))?;
    Ok(org)
}

fn raw_name(raw: &RawBaseline, what: &str) -> String {
    format!("raw INSERT {what}, {} writer(s)", raw.writers)
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let secs = ctx.run_for.as_secs_f64();
    let mut section = Section::new(
        "ingest",
        format!(
            "signed VAPI deliveries over HTTP to the in-process service on PostgreSQL, \
             {secs:.1} s per level"
        ),
    );
    // Baselines first, while nothing else runs.
    let mut raws = Vec::new();
    for c in LEVELS {
        raws.push(ctx.raw_baseline(c).await?);
    }

    let url = ctx.fresh_postgres("ingest").await?;
    let rss_before = proc_status_mib("VmRSS").unwrap_or(0.0);
    let peak_reset = reset_peak_rss();
    let config = Config {
        database_url: url,
        listen: "127.0.0.1:0".parse()?,
        vapi_webhook_secret: Some(Secret::new(SECRET)),
        ..Config::default()
    };
    let pool_size = config.database_max_connections;
    let app = Application::build(config).await?;
    let org = create_org(&app).await?;
    let endpoint = format!("http://127.0.0.1:{}/api/webhooks/vapi/{org}", app.port());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()?;

    // Warm-up: two whole calls, not measured.
    for k in 0..2 {
        for (_, body) in call_script(&format!("warm-{k}")) {
            send(&client, &endpoint, body)
                .await
                .map_err(|e| anyhow::anyhow!("warm-up delivery refused: {e}"))?;
        }
    }

    let store = app.state().store.clone();
    for (c, raw) in LEVELS.into_iter().zip(raws.iter()) {
        let head_before = store.head().await?;
        let run = drive(&client, &endpoint, c, ctx.run_for, None, &format!("c{c}")).await;
        let head_after = store.head().await?;
        let rate = run.deliveries as f64 / run.elapsed.as_secs_f64().max(1e-9);
        let events = (head_after - head_before).max(0) as f64;
        let detail = json!({
            "deliveries": run.deliveries,
            "calls_completed": run.calls_completed,
            "errors": run.errors,
            "first_error": run.first_error,
            "events_appended": events,
            "events_per_s": events / run.elapsed.as_secs_f64().max(1e-9),
            "all": run.all.summary(),
            "tool_calls": run.tool.summary(),
            "raw_insert_latency": raw.latency.summary(),
        });
        let mut row = Row::num(
            format!("deliveries/s, {c} concurrent call(s)"),
            rate,
            "req/s",
        )
        .vs(Baseline::new(raw_name(raw, "rate"), raw.rate, "ev/s"))
        .detail(detail);
        if c == 16 {
            row = row.target(Target::RatioAtLeast(0.5));
        }
        section.row(row);
        section.row(
            Row::num(
                format!("  events appended/s, {c} call(s)"),
                events / run.elapsed.as_secs_f64().max(1e-9),
                "ev/s",
            )
            .vs(Baseline::new(raw_name(raw, "rate"), raw.rate, "ev/s")),
        );
        for (samples, what) in [
            (&run.all, "all deliveries"),
            (&run.tool, "tool-calls"),
            (&run.tool_server, "tool-calls inside the service"),
        ] {
            for (pct, label) in [(50.0, "p50"), (99.0, "p99")] {
                let row = Row::num(
                    format!("  {label} latency, {what}, {c} call(s)"),
                    samples.pct_ms(pct),
                    "ms",
                )
                .vs(Baseline::new(
                    raw_name(raw, label),
                    raw.latency.pct_ms(pct),
                    "ms",
                ));
                section.row(row);
            }
        }
        if run.errors > 0 {
            section.note(format!(
                "{c} call(s): {} failed deliveries; first: {}",
                run.errors,
                run.first_error.as_deref().unwrap_or("?")
            ));
        }
    }

    // Paced: 64 calls in progress at once, each sending one delivery per PACE (real calls
    // send a final transcript every few seconds; this is about five times faster). This is
    // the "64 concurrent calls" of the tool-call target; the closed loop above is saturation.
    // The read models first absorb the closed-loop backlog, so it does not bill this run.
    let head = store.head().await?;
    app.state()
        .wait_for_position(head, Duration::from_secs(60))
        .await?;
    let paced_for = (ctx.run_for * 4).max(Duration::from_secs(20));
    let raw64 = &raws[LEVELS.len() - 1];
    let run = drive(&client, &endpoint, 64, paced_for, Some(PACE), "paced").await;
    let rate = run.deliveries as f64 / run.elapsed.as_secs_f64().max(1e-9);
    let label = format!("paced, 64 calls, 1 delivery/call/{} ms", PACE.as_millis());
    section.row(
        Row::num(format!("{label}: deliveries/s"), rate, "req/s")
            .vs(Baseline::new(raw_name(raw64, "rate"), raw64.rate, "ev/s"))
            .detail(json!({
                "deliveries": run.deliveries,
                "errors": run.errors,
                "first_error": run.first_error,
                "seconds": run.elapsed.as_secs_f64(),
                "all": run.all.summary(),
                "tool_calls": run.tool.summary(),
            })),
    );
    for (samples, what) in [
        (&run.all, "all deliveries"),
        (&run.tool, "tool-calls"),
        (&run.tool_server, "tool-calls inside the service"),
    ] {
        for (pct, name) in [(50.0, "p50"), (99.0, "p99")] {
            let mut row = Row::num(
                format!("  {name} latency, {what}, paced 64 calls"),
                samples.pct_ms(pct),
                "ms",
            )
            .vs(Baseline::new(
                raw_name(raw64, name),
                raw64.latency.pct_ms(pct),
                "ms",
            ));
            if what.ends_with("inside the service") && pct == 99.0 {
                row = row.target(Target::Below(5.0));
            }
            section.row(row);
        }
    }
    if run.errors > 0 {
        section.note(format!(
            "paced: {} failed deliveries; first: {}",
            run.errors,
            run.first_error.as_deref().unwrap_or("?")
        ));
    }

    // How long the read models take to absorb what was ingested.
    let head = store.head().await?;
    let t = Instant::now();
    let settled = app
        .state()
        .wait_for_position(head, Duration::from_secs(30))
        .await?;
    let settle_time = t.elapsed();

    let peak = proc_status_mib("VmHWM").unwrap_or(0.0);
    section.row(
        Row::num("peak RSS of the process (VmHWM)", peak, "MiB")
            .vs(Baseline::new(
                "RSS before the service started",
                rss_before,
                "MiB",
            ))
            .target(Target::Below(256.0))
            .detail(json!({"peak_mark_reset_before_start": peak_reset})),
    );
    section.note(format!(
        "latency is client-observed over loopback HTTP (includes reqwest and poem) except the \
         rows 'inside the service', read from the service's own Server-Timing header (from the \
         request entering poem to the answer leaving it: body read, auth, decision, durable \
         commit, ledger); the load generator runs in the same process on the same cores, so \
         both include waiting for a core; service pool size {pool_size} (default config)"
    ));
    section.note(format!(
        "a call = status-update, {TRANSCRIPTS} final transcripts, one tool-calls (takeMessage) \
         midway, end-of-call-report; at 1/16/64 each worker plays calls back to back (closed \
         loop, saturation: latency there is mostly queueing, ~ concurrency / throughput); the \
         paced run keeps 64 calls in progress at a realistic-but-faster rate (one delivery per \
         call per {} ms) and carries the tool-call target; the baseline at each level is raw \
         single-row INSERTs at the same concurrency",
        PACE.as_millis()
    ));
    section.note(format!(
        "peak RSS {}: it covers the service, its projectors and the load generator",
        if peak_reset {
            "measured from service start (peak mark reset)"
        } else {
            "includes earlier sections (peak mark could not be reset)"
        },
    ));
    section.note(format!(
        "after the load the read models caught up with the log head in {:.2} s{}",
        settle_time.as_secs_f64(),
        if settled { "" } else { " (TIMED OUT)" }
    ));
    app.stop().await;
    Ok(section)
}
