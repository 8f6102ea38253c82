//! Section `query`: read-side latency of the calls API over real HTTP against the in-process
//! service on PostgreSQL, with a realistically big read model.
//!
//! - A small part of the data goes through the real path: calls decided by the `Call`
//!   aggregate (`state.calls.execute`), appended to the log and projected by the live
//!   projectors; the section reports how fast that part was appended and projected.
//! - The rest (the million) is decided by the same aggregate, written to the log with COPY and
//!   projected into every read model by `rebuild_all`, timed: see [`crate::query_load`].
//! - The signed-up organization owns 10,000 calls; the others belong to organizations that
//!   have calls but no organization aggregate, so the log and tables have the full size. Every query goes through the
//!   signed-up owner's bearer token.
//!
//! Latencies are client-observed over loopback HTTP, one request at a time; the baseline is
//! `GET /health` over the same client (and a `SELECT 1` on the service pool for scale).

use std::time::{Duration, Instant};

use aggregates::call::{
    functions, CallCommand, CallContext, CallStatus, Direction, EndReport, FunctionInvocation,
    TranscriptSegment,
};
use aggregates::organization::{NotificationSettings, OrganizationSettings, TransferNumbers};
use callflex::config::Config;
use callflex::startup::Application;
use chrono::{DateTime, Utc};
use eventlog::CommandMeta;
use futures::{StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::{Connection, Executor, Row as _};
use uuid::Uuid;

use crate::report::{Baseline, Row, Samples, Section, Target};
use crate::Ctx;

/// Calls per organization (the issue: 100 organizations x 10,000 calls).
pub const PER_ORG: usize = 10_000;
/// Calls that go through the real path (aggregate → log → projectors).
const REAL_CALLS: usize = 200;
/// Concurrent calls while appending the real part.
const REAL_PARALLEL: usize = 16;
const DAY_MS: i64 = 86_400_000;
/// A row stops early after this long (slow queries), once it has MIN_SAMPLES samples.
const ROW_BUDGET: Duration = Duration::from_secs(15);
const MIN_SAMPLES: usize = 30;

/// Transcript lines; each call draws some of them. "trucking" is in every call (common),
/// "invoice" in about a quarter of them, "refrigerator" in about 0.3% (selective).
pub(crate) const SENTENCES: [&str; 24] = [
    "Hi, this is Sam, I drive route 12 and I won't make it in tomorrow.",
    "I'm sorry to hear that. Can I get your full name and route number?",
    "I need to leave a message for the billing department about an invoice.",
    "Please call me back about invoice 1182, the amount looks wrong.",
    "Can you transfer me to dispatch, I have a question about my load?",
    "The delivery to Northside Foods is running about an hour late.",
    "I'm stuck in traffic on the interstate near exit forty two.",
    "What time does the warehouse open on Saturday morning?",
    "My truck has a flat tire and I'm waiting for roadside assistance.",
    "Got it. I'll let dispatch know right away. Anything else?",
    "Could you send the bill of lading to my email address?",
    "I'll pass that on right away, someone will call you back shortly.",
    "The customer refused the pallet because the shrink wrap was torn.",
    "Is there any overtime available on the weekend shift?",
    "I picked up the trailer but the paperwork is missing a signature.",
    "Yes, my phone number is the one I'm calling from.",
    "I'd like to schedule a pickup for next Tuesday afternoon.",
    "The fuel card was declined at the station in Springfield.",
    "Thank you, that's all I needed, have a good day.",
    "Let me check the schedule for you, one moment please.",
    "My supervisor told me to call about the safety training.",
    "Can you confirm the address for the drop off in Joliet?",
    "I'm feeling sick today and I need to call out for my shift.",
    "The gate code at the yard isn't working this morning.",
];
pub(crate) const GREETING: &str = "Thanks for calling Acme Trucking, this is the dispatch line.";
pub(crate) const RARE: &str = "The refrigerator unit on trailer 4471 stopped cooling overnight.";
pub(crate) const ENDED_REASONS: [&str; 10] = [
    "customer-ended-call",
    "customer-ended-call",
    "customer-ended-call",
    "assistant-ended-call",
    "assistant-forwarded-call",
    "silence-timed-out",
    "customer-did-not-answer",
    "exceeded-max-duration",
    "pipeline-error-openai-llm-failed",
    "twilio-failed-to-connect-call",
];

fn ms_to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub(crate) fn org_settings() -> OrganizationSettings {
    OrganizationSettings {
        notifications: NotificationSettings {
            sms_enabled: true,
            sms_numbers: vec!["+15550001111".into()],
            ..Default::default()
        },
        transfer_numbers: TransferNumbers {
            dispatch: Some("+15550002222".into()),
            manager: Some("+15550003333".into()),
            emergency: None,
        },
        ..Default::default()
    }
}

/// The commands of one realistic call: start, in-progress, 20 final transcripts with two tool
/// calls, hang-up, end-of-call report (26 commands).
fn call_commands(org: Uuid, n: usize, start_ms: i64, rng: &mut StdRng) -> Vec<CallCommand> {
    let vapi_id = format!("real-{n}");
    let started = ms_to_time(start_ms);
    let ctx = CallContext {
        organization_id: org,
        vapi_call_id: vapi_id.clone(),
        from_number: Some(format!(
            "+1{}",
            2_000_000_000u64 + rng.gen_range(0..1000u64)
        )),
        to_number: Some("+15559990000".into()),
        direction: Direction::Inbound,
        phone_number_id: Some("pn-0".into()),
        assistant_id: Some("asst-bench".into()),
        provider_call_id: Some(format!("CA{vapi_id}")),
        started_at: Some(started),
    };
    let settings = org_settings();
    let mut t = start_ms;
    let mut out = vec![
        CallCommand::Start {
            ctx: ctx.clone(),
            at: started,
        },
        CallCommand::UpdateStatus {
            ctx: ctx.clone(),
            status: CallStatus::InProgress,
            ended_reason: None,
            at: ms_to_time(start_ms + 1_000),
        },
    ];
    for i in 1..=20u64 {
        t += 4_000;
        let text = if i == 1 {
            GREETING.to_string()
        } else {
            SENTENCES[rng.gen_range(0..SENTENCES.len())].to_string()
        };
        out.push(CallCommand::AddTranscript {
            ctx: ctx.clone(),
            segment: TranscriptSegment {
                key: format!("seg-{i:05}"),
                role: if i % 2 == 1 { "assistant" } else { "user" }.into(),
                text,
                at: ms_to_time(t),
                seconds_from_start: Some(((t - start_ms) / 1_000) as f64),
            },
        });
        if i == 8 || i == 16 {
            let (name, args) = if i == 8 {
                (
                    "takeMessage",
                    json!({"callerName": "Pat", "message": "Please call me back about invoice 1182",
                           "urgent": false}),
                )
            } else {
                (
                    "transferCall",
                    json!({"destination": "dispatch", "reason": "load question"}),
                )
            };
            let args = args.as_object().cloned().unwrap_or_default();
            let decided = functions::decide(name, &args, &settings);
            t += 500;
            out.push(CallCommand::HandleFunctionCall {
                ctx: ctx.clone(),
                invocation: FunctionInvocation {
                    tool_call_id: format!("tc-{vapi_id}-{i}"),
                    name: name.to_string(),
                    arguments: Value::Object(args),
                    action: decided.action,
                    reply: decided.reply,
                    at: ms_to_time(t),
                    notifications: decided.notifications,
                },
            });
        }
    }
    t += 2_000;
    out.push(CallCommand::Hang {
        ctx: ctx.clone(),
        at: ms_to_time(t),
    });
    t += 1_000;
    out.push(CallCommand::End {
        ctx: ctx.clone(),
        report: EndReport {
            ended_reason: Some(ENDED_REASONS[rng.gen_range(0..ENDED_REASONS.len())].into()),
            started_at: Some(started),
            ended_at: Some(ms_to_time(t - 1_000)),
            duration_seconds: None,
            cost: Some(0.0123 * ((t - start_ms) / 1_000) as f64),
            cost_breakdown: json!({"llm": 0.02, "stt": 0.01, "tts": 0.015}),
            transcript: None,
            messages: json!([]),
            recording_url: Some(format!("https://storage.vapi.test/{vapi_id}.wav")),
            stereo_recording_url: None,
            summary: Some("Caller left a message for dispatch.".into()),
            structured_data: json!({"route": "12"}),
            success_evaluation: Some("true".into()),
            at: ms_to_time(t),
        },
    });
    out
}

/// The verification token in the sign-up email the sandboxed Resend client recorded for
/// `email` (sent in the background: waits for it).
async fn verification_token(app: &Application, email: &str) -> anyhow::Result<String> {
    const MARKER: &str = "Verification token: ";
    for _ in 0..400 {
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT body FROM outbound_requests WHERE provider = 'resend' ORDER BY created_at DESC",
        )
        .fetch_all(app.state().store.pool())
        .await?;
        let token = bodies
            .iter()
            .filter_map(|b| serde_json::from_str::<Value>(b).ok())
            .filter(|m| m["to"][0] == email)
            .find_map(|m| {
                let rest = m["text"].as_str()?.split(MARKER).nth(1)?;
                rest.split_whitespace().next().map(str::to_string)
            });
        if let Some(token) = token {
            return Ok(token);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("no verification email for {email}")
}

/// One GET; the body is read (and must be 200) so the whole answer is timed.
async fn get(
    client: &reqwest::Client,
    url: &str,
    query: &[(&str, String)],
) -> anyhow::Result<(Duration, Value)> {
    let t = Instant::now();
    let res = client.get(url).query(query).send().await?;
    let status = res.status();
    let body = res.bytes().await?;
    let took = t.elapsed();
    anyhow::ensure!(
        status.is_success(),
        "GET {url} {query:?}: HTTP {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok((took, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// Runs `n` requests built by `make(i)` one after another (after `n / 10` warm-up requests);
/// returns the samples and the last answer.
async fn measure(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    make: impl Fn(usize) -> Vec<(&'static str, String)>,
) -> anyhow::Result<(Samples, Value)> {
    let mut samples = Samples::default();
    let mut last = Value::Null;
    let warm = (n / 10).max(5);
    let started = Instant::now();
    for i in 0..warm + n {
        let (took, body) = get(client, url, &make(i)).await?;
        last = body;
        if i >= warm {
            samples.push(took);
            if samples.len() >= MIN_SAMPLES && started.elapsed() > ROW_BUDGET {
                break;
            }
        }
    }
    Ok((samples, last))
}

pub async fn run(ctx: &Ctx, calls_flag: Option<usize>) -> anyhow::Result<Section> {
    let total = calls_flag
        .unwrap_or(if ctx.quick { 100_000 } else { 1_000_000 })
        .max(PER_ORG);
    let orgs = total.div_ceil(PER_ORG);
    let requests = if ctx.quick { 300 } else { 1_000 };
    let mut section = Section::new(
        "query",
        format!(
            "calls API over HTTP on PostgreSQL, {total} calls ({orgs} orgs x up to {PER_ORG}), \
             {requests} sequential requests per row"
        ),
    );

    let url = ctx.fresh_postgres("query").await?;
    let config = Config {
        database_url: url.clone(),
        listen: "127.0.0.1:0".parse()?,
        ..Config::default()
    };
    let app = Application::build(config.clone()).await?;
    let base = format!("http://127.0.0.1:{}", app.port());

    // Sign up the owner with an organization, as a customer does.
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&json!({
            "email": "owner@acme.test",
            "password": "correct horse battery 9",
            "name": "Bench Owner",
            "organization_name": "Acme Trucking",
        }))
        .send()
        .await?;
    let status = res.status();
    let answer: Value = res.json().await?;
    anyhow::ensure!(status.is_success(), "sign-up refused: {answer}");
    // The address is verified with the token the (sandboxed) email carried.
    let token = verification_token(&app, "owner@acme.test").await?;
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/verify-email"))
        .json(&json!({ "token": token }))
        .send()
        .await?;
    let status = res.status();
    let signed_up: Value = res.json().await?;
    anyhow::ensure!(status.is_success(), "verification refused: {signed_up}");
    let org: Uuid = signed_up["organization"]["id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| anyhow::anyhow!("no organization id in {signed_up}"))?;
    let token = signed_up["token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no token in {signed_up}"))?
        .to_string();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .tcp_nodelay(true)
        .build()?;

    // The big part goes through the log: the service stops while it is loaded and projected
    // (as an analyst's rebuild would), then starts again on the result.
    app.stop().await;
    let now_ms = Utc::now().timestamp_millis();
    let real_calls = REAL_CALLS.min(total);
    let plan: Vec<(Uuid, usize)> = (0..orgs)
        .map(|i| {
            let n = if i + 1 == orgs {
                total - PER_ORG * (orgs - 1)
            } else {
                PER_ORG
            };
            if i == 0 {
                (org, PER_ORG.min(total) - real_calls)
            } else {
                (Uuid::new_v4(), n)
            }
        })
        .collect();
    let loaded = crate::query_load::load_and_project(&url, &plan, now_ms).await?;
    let mut conn = sqlx::postgres::PgConnection::connect(&url).await?;
    let t = Instant::now();
    conn.execute("ANALYZE calls, transcripts, transcript_search, call_actions")
        .await?;
    let analyze_time = t.elapsed();
    section.row(
        Row::num(
            format!(
                "log load: {} calls' events decided by the Call aggregate, COPY",
                loaded.calls
            ),
            loaded.events as f64 / loaded.load_time.as_secs_f64().max(1e-9),
            "ev/s",
        )
        .detail(json!({"calls": loaded.calls, "events": loaded.events,
                       "seconds": loaded.load_time.as_secs_f64()})),
    );
    let per: serde_json::Map<String, Value> = loaded
        .apply_times
        .iter()
        .map(|(name, took)| {
            (
                (*name).to_string(),
                json!({"apply_seconds": took.as_secs_f64()}),
            )
        })
        .collect();
    section.row(
        Row::num(
            format!(
                "time to project them: rebuild_all over {} events ({} calls)",
                loaded.events, loaded.calls
            ),
            loaded.project_time.as_secs_f64(),
            "s",
        )
        .detail(json!({"events_per_s": loaded.events as f64 / loaded.project_time.as_secs_f64().max(1e-9),
                       "projectors": Value::Object(per),
                       "analyze_seconds": analyze_time.as_secs_f64()})),
    );
    let app = Application::build(config.clone()).await?;
    let base = format!("http://127.0.0.1:{}", app.port());

    // The real path: REAL_CALLS calls decided by the Call aggregate, appended, projected.
    let state = app.state().clone();
    let mut rng = StdRng::seed_from_u64(42);
    let scripts: Vec<Vec<CallCommand>> = (0..real_calls)
        .map(|n| {
            let start = now_ms - rng.gen_range(0..90 * DAY_MS);
            call_commands(org, n, start, &mut rng)
        })
        .collect();
    let commands: usize = scripts.iter().map(Vec::len).sum();
    let head_before = state.store.head().await?;
    let t = Instant::now();
    let real_ids: Vec<String> = futures::stream::iter(scripts.into_iter().enumerate())
        .map(|(n, script)| {
            let state = state.clone();
            async move {
                let vapi_id = format!("real-{n}");
                let id = callflex::webhooks::vapi::call_id(org, &vapi_id);
                let meta = CommandMeta::new(format!("provider:vapi:{vapi_id}")).tenant(org);
                for command in script {
                    state
                        .calls
                        .execute(&id, command, &meta)
                        .await
                        .map_err(|e| anyhow::anyhow!("call {vapi_id}: {e}"))?;
                }
                anyhow::Ok(id)
            }
        })
        .buffer_unordered(REAL_PARALLEL)
        .try_collect()
        .await?;
    let append_time = t.elapsed();
    let head = state.store.head().await?;
    let t_wait = Instant::now();
    let caught_up = state
        .wait_for_position(head, Duration::from_secs(300))
        .await?;
    let lag = t_wait.elapsed();
    let projected_time = t.elapsed();
    let events = (head - head_before).max(0) as u64;
    let append_rate = events as f64 / append_time.as_secs_f64().max(1e-9);
    section.row(
        Row::num(
            format!("real path: {real_calls} calls appended via Call aggregate ({REAL_PARALLEL} concurrent)"),
            append_rate,
            "ev/s",
        )
        .detail(json!({"events": events, "commands": commands, "calls": real_ids.len(),
                       "seconds": append_time.as_secs_f64()})),
    );
    section.row(
        Row::num(
            "real path: projected (first append → read models caught up with head)",
            events as f64 / projected_time.as_secs_f64().max(1e-9),
            "ev/s",
        )
        .vs(Baseline::new(
            "append rate (same calls)",
            append_rate,
            "ev/s",
        ))
        .detail(
            json!({"events": events, "seconds": projected_time.as_secs_f64(),
                       "caught_up": caught_up}),
        ),
    );
    section.row(
        Row::num(
            "real path: read-model lag after the last append",
            lag.as_secs_f64() * 1e3,
            "ms",
        )
        .detail(json!({"caught_up": caught_up})),
    );
    let t = Instant::now();
    conn.execute("ANALYZE calls, transcripts, transcript_search, call_actions")
        .await?;
    let analyze2 = t.elapsed();
    let org_rows: i64 = sqlx::query("SELECT COUNT(*) FROM calls WHERE organization_id = $1")
        .bind(org.to_string())
        .fetch_one(&mut conn)
        .await?
        .try_get(0)?;
    let ids: Vec<String> =
        sqlx::query("SELECT id FROM calls WHERE organization_id = $1 ORDER BY md5(id) LIMIT 500")
            .bind(org.to_string())
            .fetch_all(&mut conn)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
    let callers: Vec<String> = sqlx::query(
        "SELECT DISTINCT from_number FROM calls WHERE organization_id = $1 \
         AND from_number IS NOT NULL ORDER BY 1 LIMIT 200",
    )
    .bind(org.to_string())
    .fetch_all(&mut conn)
    .await?
    .iter()
    .map(|r| r.try_get::<String, _>(0))
    .collect::<Result<_, _>>()?;
    let word_hits: Vec<(String, i64)> = {
        let mut out = Vec::new();
        for w in ["refrigerator", "invoice", "trucking"] {
            let n: i64 = sqlx::query(
                "SELECT COUNT(*) FROM transcript_search WHERE organization_id = $1 \
                 AND to_tsvector('english', body) @@ websearch_to_tsquery('english', $2)",
            )
            .bind(org.to_string())
            .bind(w)
            .fetch_one(&mut conn)
            .await?
            .try_get(0)?;
            out.push((w.to_string(), n));
        }
        out
    };
    conn.close().await?;
    anyhow::ensure!(!ids.is_empty(), "no calls for the signed-up organization");

    // Baselines: GET /health over the same client, and SELECT 1 on the service pool.
    let (health, _) = measure(&client, &format!("{base}/health"), requests, |_| vec![]).await?;
    let mut select1 = Samples::default();
    for i in 0..requests + 30 {
        let t = Instant::now();
        sqlx::query("SELECT 1")
            .fetch_one(state.store.pool())
            .await?;
        if i >= 30 {
            select1.push(t.elapsed());
        }
    }
    for (pct, label) in [(50.0, "p50"), (99.0, "p99")] {
        section.row(
            Row::num(
                format!("baseline: SELECT 1 on the service pool, {label}"),
                select1.pct_ms(pct),
                "ms",
            )
            .vs(Baseline::new(
                format!("GET /health {label}"),
                health.pct_ms(pct),
                "ms",
            )),
        );
    }

    // Cursors: walk the first pages once (unfiltered and filtered) and sample from them.
    let list_url = format!("{base}/api/v1/calls");
    let filter_reason = "silence-timed-out";
    let mut cursors: Vec<String> = Vec::new();
    let mut filtered_cursors: Vec<String> = Vec::new();
    for (filtered, out) in [(false, &mut cursors), (true, &mut filtered_cursors)] {
        let mut cursor: Option<String> = None;
        for _ in 0..40 {
            let mut q = vec![];
            if filtered {
                q.push(("ended_reason", filter_reason.to_string()));
            }
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let (_, page) = get(&client, &list_url, &q).await?;
            match page["next_cursor"].as_str() {
                Some(c) => {
                    out.push(c.to_string());
                    cursor = Some(c.to_string());
                }
                None => break,
            }
        }
        anyhow::ensure!(!out.is_empty(), "no next_cursor on the first page");
    }

    let now = Utc::now();
    let stats_from = (now - chrono::Duration::days(30)).to_rfc3339();
    let stats_to = now.to_rfc3339();
    type Make = Box<dyn Fn(usize) -> Vec<(&'static str, String)>>;
    let c1 = cursors.clone();
    let c2 = filtered_cursors.clone();
    let callers2 = callers.clone();
    let mut cases: Vec<(String, String, Make, f64)> = vec![
        (
            "GET /calls, first page (25)".into(),
            list_url.clone(),
            Box::new(|_| vec![]),
            10.0,
        ),
        (
            format!("GET /calls, cursor page (pages 2..{})", c1.len() + 1),
            list_url.clone(),
            Box::new(move |i| vec![("cursor", c1[i % c1.len()].clone())]),
            10.0,
        ),
        (
            format!("GET /calls?ended_reason={filter_reason}, first page"),
            list_url.clone(),
            Box::new(move |_| vec![("ended_reason", filter_reason.to_string())]),
            10.0,
        ),
        (
            format!("GET /calls?ended_reason={filter_reason}, cursor page"),
            list_url.clone(),
            Box::new(move |i| {
                vec![
                    ("ended_reason", filter_reason.to_string()),
                    ("cursor", c2[i % c2.len()].clone()),
                ]
            }),
            10.0,
        ),
        (
            "GET /calls?caller=<number>, first page".into(),
            list_url.clone(),
            Box::new(move |i| vec![("caller", callers2[i % callers2.len()].clone())]),
            10.0,
        ),
        (
            "GET /calls/{id}".into(),
            String::new(),
            Box::new(|_| vec![]),
            10.0,
        ),
        (
            "GET /calls/stats (30 days, America/Chicago)".into(),
            format!("{base}/api/v1/calls/stats"),
            Box::new(move |_| {
                vec![
                    ("from", stats_from.clone()),
                    ("to", stats_to.clone()),
                    ("tz", "America/Chicago".to_string()),
                ]
            }),
            50.0,
        ),
    ];
    for (word, hits) in &word_hits {
        let w = word.clone();
        cases.push((
            format!("GET /calls/search?q={word} ({hits} matches)"),
            format!("{base}/api/v1/calls/search"),
            Box::new(move |_| vec![("q", w.clone())]),
            50.0,
        ));
    }

    let mut last_answers = serde_json::Map::new();
    for (name, url, make, target) in cases {
        let (samples, last) = if url.is_empty() {
            // Detail: a different call each time.
            let mut samples = Samples::default();
            let mut last = Value::Null;
            let warm = (requests / 10).max(5);
            for i in 0..warm + requests {
                let id = &ids[i % ids.len()];
                let (took, body) = get(&client, &format!("{base}/api/v1/calls/{id}"), &[]).await?;
                if i >= warm {
                    samples.push(took);
                }
                last = body;
            }
            (samples, last)
        } else {
            measure(&client, &url, requests, make).await?
        };
        let rows_in_answer = last["data"].as_array().map(|a| a.len());
        last_answers.insert(
            name.clone(),
            json!({"rows_in_last_answer": rows_in_answer,
                   "total_calls": last["data"]["total_calls"]}),
        );
        for (pct, label) in [(50.0, "p50"), (99.0, "p99")] {
            let mut row = Row::num(format!("{name} {label}"), samples.pct_ms(pct), "ms")
                .vs(Baseline::new(
                    format!("GET /health {label}"),
                    health.pct_ms(pct),
                    "ms",
                ))
                .detail(samples.summary());
            if pct == 99.0 {
                row = row.target(Target::Below(target));
            }
            section.row(row);
        }
    }

    section.note(format!(
        "data: {total} calls in {orgs} organizations; the signed-up organization owns \
         {org_rows} ({real_calls} through the real path, the rest through the log load); the \
         other organizations have calls but no organization aggregate"
    ));
    section.note(format!(
        "log load: {} calls decided by the Call aggregate (96% ended with an analysis, 10 \
         ended reasons, ~1,000 callers per org, durations 15-615 s, 4-6 transcript lines drawn \
         from {} sentences, 0-2 tool calls) = {} events, written with COPY in {:.1} s; \
         projected into every read model by rebuild_all in {:.1} s (+ ANALYZE {:.1} s, {:.1} s \
         after the real path)",
        loaded.calls,
        SENTENCES.len(),
        loaded.events,
        loaded.load_time.as_secs_f64(),
        loaded.project_time.as_secs_f64(),
        analyze_time.as_secs_f64(),
        analyze2.as_secs_f64(),
    ));
    section.note(format!(
        "real path: {real_calls} calls x {} commands = {events} events through \
         AggregateRepository<Call>::execute, then live projection; read models {} with the \
         log head {:.2} s after the last append",
        commands / real_calls.max(1),
        if caught_up {
            "caught up"
        } else {
            "DID NOT catch up"
        },
        lag.as_secs_f64()
    ));
    section.note(
        "latency is client-observed over loopback HTTP, one request at a time, with the \
         owner's bearer token (sign-up → token); each row is preceded by 10% warm-up requests \
         and stops after 15 s once it has 30 samples (counts in the JSON detail); ratios are \
         against GET /health measured the same way in this run",
    );
    if let Some(r) = section.rows.last_mut() {
        r.detail = json!({"summary": r.detail, "answers": Value::Object(last_answers)});
    }
    app.stop().await;
    Ok(section)
}
