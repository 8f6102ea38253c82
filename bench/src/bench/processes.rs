//! The `processes` section: post-call processing and notifications, with stub providers on
//! 127.0.0.1 that answer at once and note when each message arrived.
//!
//! - Paced: 16 calls per second, each with an urgent message during the call (an SMS at
//!   once) and an end-of-call report carrying VAPI's summary (a post-call SMS and email).
//!   Call end (its 2xx) → the last post-call notification received by the stub, p50/p99;
//!   the urgent tool call's 2xx → its SMS received, p99.
//! - Backlog: calls ended while no process ran, then one service starts with the processes
//!   on; process steps recorded per second until all are done, against raw INSERT/s.
//! - Ingest at 16 concurrent calls (closed loop) with the processes on and off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregates::organization::{NotificationSettings, OrganizationCommand, OrganizationSettings};
use callflex::config::{Config, ProviderConfig, Secret};
use callflex::startup::Application;
use eventlog::CommandMeta;
use poem::web::{Data, Form};
use poem::{handler, post, EndpointExt, Route};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::report::{Baseline, Row, Samples, Section, Target};
use crate::Ctx;

const SECRET: &str = "bench";
const RATE_PER_S: f64 = 16.0;

/// When the stub received each message text.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Instant)>>>);

impl Received {
    fn note(&self, text: String) {
        if let Ok(mut all) = self.0.lock() {
            all.push((text, Instant::now()));
        }
    }

    fn snapshot(&self) -> Vec<(String, Instant)> {
        self.0.lock().map(|all| all.clone()).unwrap_or_default()
    }
}

#[handler]
fn email(Data(received): Data<&Received>, body: poem::web::Json<Value>) -> poem::web::Json<Value> {
    received.note(body["text"].as_str().unwrap_or_default().to_string());
    poem::web::Json(json!({"id": Uuid::new_v4().to_string()}))
}

#[handler]
fn sms(
    Data(received): Data<&Received>,
    Form(form): Form<HashMap<String, String>>,
) -> poem::Response {
    received.note(form.get("Body").cloned().unwrap_or_default());
    poem::Response::builder()
        .status(poem::http::StatusCode::CREATED)
        .content_type("application/json")
        .body(
            json!({"sid": format!("SM{}", Uuid::new_v4().simple()), "status": "queued"})
                .to_string(),
        )
}

#[handler]
fn list() -> poem::web::Json<Value> {
    poem::web::Json(json!({"messages": []}))
}

async fn start_stub() -> anyhow::Result<(String, Received)> {
    let received = Received::default();
    let app = Route::new()
        .at("/emails", post(email))
        .at(
            "/2010-04-01/Accounts/:sid/Messages.json",
            post(sms).get(list),
        )
        .data(received.clone());
    Ok((crate::local::serve(app).await?, received))
}

fn config(url: &str, stub: &str, processes: bool) -> anyhow::Result<Config> {
    let live = |key: &str| ProviderConfig {
        base_url: stub.to_string(),
        api_key: Some(Secret::new(key)),
    };
    Ok(Config {
        database_url: url.to_string(),
        listen: "127.0.0.1:0".parse()?,
        vapi_webhook_secret: Some(Secret::new(SECRET)),
        resend: live("re_bench"),
        twilio: live("twilio-bench"),
        twilio_account_sid: Some("ACbench0000000000000000000000000".into()),
        processes_enabled: processes,
        ..Config::default()
    })
}

async fn create_org(app: &Application) -> anyhow::Result<Uuid> {
    let org = Uuid::new_v4();
    let meta = CommandMeta::new("system:bench").tenant(org);
    let meta = &meta;
    let run = |command| async move {
        app.state()
            .organizations
            .execute(&org.to_string(), command, meta)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    run(OrganizationCommand::Create {
        id: org,
        name: "Bench Dispatch".into(),
        owner_user_id: "bench-owner".into(),
        owner_email: "owner@bench.test".into(),
        actor: "system:bench".into(),
    })
    .await?;
    run(OrganizationCommand::UpdateSettings {
        settings: OrganizationSettings {
            notifications: NotificationSettings {
                sms_enabled: true,
                sms_numbers: vec!["+15550001111".into()],
                email_enabled: true,
                email_addresses: vec!["dispatch@bench.test".into()],
                post_call_summary: true,
                quiet_hours: None,
                usage_alerts_sms: false,
            },
            ..Default::default()
        },
        actor: "system:bench".into(),
    })
    .await?;
    Ok(org)
}

fn message(kind: &str, call: &str, extra: Value) -> String {
    let mut body = json!({
        "type": kind,
        "call": {"id": call, "type": "inboundPhoneCall", "customer": {"number": "+15551230000"}},
        "phoneNumber": {"number": "+15559990000"},
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    json!({ "message": body }).to_string()
}

fn urgent(call: &str, n: usize) -> String {
    message(
        "tool-calls",
        call,
        json!({"toolCallList": [{"id": format!("t-{n}"), "type": "function", "function": {
            "name": "takeMessage",
            "arguments": {"message": format!("urgent {n} pipe burst"), "urgent": true}}}]}),
    )
}

fn end_report(call: &str, n: usize) -> String {
    message(
        "end-of-call-report",
        call,
        json!({"endedReason": "customer-ended-call",
               "startedAt": "2024-07-15T10:00:00Z", "endedAt": "2024-07-15T10:01:10Z",
               "analysis": {"summary": format!("Bench call {n} asked for a quote.")}}),
    )
}

/// Posts one signed VAPI delivery; answers when its 2xx arrived (the sections' common
/// ingest step).
pub(crate) async fn deliver(
    client: &reqwest::Client,
    url: &str,
    body: String,
) -> anyhow::Result<Instant> {
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-vapi-secret", SECRET)
        .body(body)
        .send()
        .await?;
    let at = Instant::now();
    anyhow::ensure!(
        res.status().is_success(),
        "delivery answered {}",
        res.status()
    );
    Ok(at)
}

/// Waits until every process instance has finished and returns how long that took.
async fn drained(app: &Application, limit: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let state = app.state();
    loop {
        if state.processes_idle().await? {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(started.elapsed() < limit, "processes did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn count_steps(app: &Application) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE event_type IN \
         ('StepSucceeded', 'StepSkipped', 'StepFailed', 'StepAttempted')",
    )
    .fetch_one(app.state().store.pool())
    .await?)
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let paced_for = if ctx.quick {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(30)
    };
    let mut section = Section::new(
        "processes",
        format!(
            "post-call processing on PostgreSQL with stub providers answering at once; \
             {RATE_PER_S} calls/s for {:.0} s",
            paced_for.as_secs_f64()
        ),
    );
    let (stub, received) = start_stub().await?;
    let raw = ctx.raw_baseline(16).await?;

    // Paced: 16 calls per second.
    let url = ctx.fresh_postgres("processes").await?;
    let app = Application::build(config(&url, &stub, true)?).await?;
    let org = create_org(&app).await?;
    let endpoint = format!("http://127.0.0.1:{}/api/webhooks/vapi/{org}", app.port());
    let client = reqwest::Client::new();
    let calls = (paced_for.as_secs_f64() * RATE_PER_S) as usize;
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for n in 0..calls {
        let (client, endpoint) = (client.clone(), endpoint.clone());
        let at = started + Duration::from_secs_f64(n as f64 / RATE_PER_S);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let call = format!("bench-proc-{n}");
            let urgent_at = deliver(&client, &endpoint, urgent(&call, n)).await?;
            let ended_at = deliver(&client, &endpoint, end_report(&call, n)).await?;
            anyhow::Ok((n, urgent_at, ended_at))
        }));
    }
    let mut acks = Vec::new();
    for task in tasks {
        acks.push(task.await??);
    }
    drained(&app, Duration::from_secs(120)).await?;
    let statuses: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
        "SELECT kind, status, COUNT(*), MAX(last_error) FROM process_work GROUP BY kind, status",
    )
    .fetch_all(app.state().store.pool())
    .await?;
    let received_count = received.snapshot().len();
    // Index by the call number each text names (the post-call SMS and email share a text).
    let all = received.snapshot();
    let mut urgent_rx: HashMap<usize, Instant> = HashMap::new();
    let mut summary_rx: HashMap<usize, (Instant, usize)> = HashMap::new();
    for (text, at) in &all {
        let number = |marker: &str| {
            text.split(marker)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<usize>().ok())
        };
        if let Some(n) = number("urgent ") {
            urgent_rx.insert(n, *at);
        } else if let Some(n) = number("Bench call ") {
            let entry = summary_rx.entry(n).or_insert((*at, 0));
            entry.0 = entry.0.max(*at);
            entry.1 += 1;
        }
    }
    let mut end_to_last = Samples::default();
    let mut urgent_to_sms = Samples::default();
    let mut missing = 0;
    for (n, urgent_at, ended_at) in &acks {
        match (urgent_rx.get(n), summary_rx.get(n)) {
            (Some(sms_at), Some((last, 2))) => {
                urgent_to_sms.push(sms_at.saturating_duration_since(*urgent_at));
                end_to_last.push(last.saturating_duration_since(*ended_at));
            }
            _ => missing += 1,
        }
    }
    section.row(
        Row::num(
            "call end → last post-call notification received, p50",
            end_to_last.pct_ms(50.0),
            "ms",
        )
        .detail(
            json!({"calls": calls, "missing": missing, "received": received_count,
                       "instances": statuses, "samples": end_to_last.summary()}),
        ),
    );
    section.row(
        Row::num(
            "call end → last post-call notification received, p99",
            end_to_last.pct_ms(99.0),
            "ms",
        )
        .target(Target::Below(1_000.0)),
    );
    section.row(
        Row::num(
            "urgent message → its SMS received, p50",
            urgent_to_sms.pct_ms(50.0),
            "ms",
        )
        .detail(json!({"samples": urgent_to_sms.summary()})),
    );
    section.row(
        Row::num(
            "urgent message → its SMS received, p99",
            urgent_to_sms.pct_ms(99.0),
            "ms",
        )
        .target(Target::Below(500.0)),
    );
    app.stop().await;

    // Backlog: calls ended while no process ran, then the processes alone.
    let backlog = if ctx.quick { 200 } else { 500 };
    let url = ctx.fresh_postgres("processes_backlog").await?;
    let quiet = Application::build(config(&url, &stub, false)?).await?;
    let org = create_org(&quiet).await?;
    let endpoint = format!("http://127.0.0.1:{}/api/webhooks/vapi/{org}", quiet.port());
    let bodies: Vec<String> = (0..backlog)
        .map(|n| end_report(&format!("backlog-{n}"), 100_000 + n))
        .collect();
    use futures::StreamExt;
    let results: Vec<anyhow::Result<Instant>> = futures::stream::iter(bodies)
        .map(|body| {
            let (client, endpoint) = (client.clone(), endpoint.clone());
            async move { deliver(&client, &endpoint, body).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for result in results {
        result?;
    }
    quiet.stop().await;
    let app = Application::build(config(&url, &stub, true)?).await?;
    let took = drained(&app, Duration::from_secs(300)).await?;
    let steps = count_steps(&app).await?;
    let rate = steps as f64 / took.as_secs_f64().max(1e-9);
    section.row(
        Row::num(
            format!("process steps recorded/s, backlog of {backlog} ended calls"),
            rate,
            "steps/s",
        )
        .vs(Baseline::new(
            "raw INSERT rate, 16 writers",
            raw.rate,
            "ev/s",
        ))
        .target(Target::RatioAtLeast(0.065))
        .detail(json!({
            "steps": steps,
            "seconds": took.as_secs_f64(),
            "instances": 3 * backlog,
            "concurrency": app.state().config.process_concurrency,
        })),
    );
    app.stop().await;
    section.note(
        "steps are the process events a worker records (attempted, succeeded, skipped, failed); \
         each call's processing has four steps (analysis, notify, recording, close) and starts two notifications of one step each, \
         the SMS one recording its attempt first",
    );
    Ok(section)
}
