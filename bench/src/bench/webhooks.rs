//! The `webhooks` section: outbound webhook deliveries to a receiver on 127.0.0.1 that
//! answers 200 at once and notes when each delivery arrived.
//!
//! - Backlog: contacts created while no process ran (events that start no other process),
//!   16 endpoints subscribed; then one service starts with the processes on and delivers
//!   everything: deliveries/s against the same run's raw INSERT/s (target 0.14,
//!   graphile-worker's bulk-enqueue ratio measured on this kind of machine).
//! - Paced: 50 calls/s ended through the VAPI webhook (ingest running), one endpoint
//!   subscribed to both events: 100 deliveries/s; the 2xx of the delivery that recorded an
//!   event → the receiver has it, p50/p99 (target p99 < 500 ms).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregates::organization::OrganizationCommand;
use callflex::config::{Config, Secret};
use callflex::startup::Application;
use eventlog::CommandMeta;
use poem::web::Data;
use poem::{handler, post, EndpointExt, Route};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::processes::deliver;
use crate::report::{Baseline, Row, Samples, Section, Target};
use crate::Ctx;

const SECRET: &str = "bench";
const CALLS_PER_S: f64 = 50.0;
const ENDPOINTS: usize = 16;

/// (event type, call id, when it arrived) of each delivery.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, String, Instant)>>>);

#[handler]
fn receive(Data(received): Data<&Received>, body: poem::web::Json<Value>) -> &'static str {
    let kind = body["type"].as_str().unwrap_or_default().to_string();
    let call = body["data"]["call_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Ok(mut all) = received.0.lock() {
        all.push((kind, call, Instant::now()));
    }
    "ok"
}

async fn start_receiver() -> anyhow::Result<(String, Received)> {
    let received = Received::default();
    let app = Route::new()
        .at("/hooks/:n", post(receive))
        .data(received.clone());
    Ok((crate::local::serve(app).await?, received))
}

fn config(url: &str, processes: bool) -> anyhow::Result<Config> {
    let mut config = Config {
        database_url: url.to_string(),
        listen: "127.0.0.1:0".parse()?,
        vapi_webhook_secret: Some(Secret::new(SECRET)),
        processes_enabled: processes,
        ..Config::default()
    };
    config.egress.allow_http = true;
    config.egress.allow_private = true;
    // One keyring for both services of the backlog run (the secrets are sealed in the log).
    config.keyring = Some(callflex::secrets::Keyring::parse(
        "bench:YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtMTI=",
    )?);
    Ok(config)
}

async fn create_org(app: &Application, receiver: &str, endpoints: usize) -> anyhow::Result<Uuid> {
    let org = Uuid::new_v4();
    let meta = CommandMeta::new("system:bench").tenant(org);
    let state = app.state();
    let run = |command| {
        let meta = meta.clone();
        async move {
            state
                .organizations
                .execute(&org.to_string(), command, &meta)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
        }
    };
    run(OrganizationCommand::Create {
        id: org,
        name: "Bench Hooks".into(),
        owner_user_id: "bench-owner".into(),
        owner_email: "owner@bench.test".into(),
        actor: "system:bench".into(),
    })
    .await?;
    for n in 0..endpoints {
        run(OrganizationCommand::CreateWebhookEndpoint {
            endpoint_id: format!("we_bench_{n}"),
            url: format!("{receiver}/hooks/{n}"),
            description: None,
            event_types: vec![
                "call.started".into(),
                "call.ended".into(),
                "contact.created".into(),
            ],
            secret: state.secrets.seal("whsec_YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2g="),
            enabled: true,
            actor: "system:bench".into(),
        })
        .await?;
    }
    Ok(org)
}

fn end_report(call: &str) -> String {
    json!({"message": {
        "type": "end-of-call-report",
        "call": {"id": call, "type": "inboundPhoneCall", "customer": {"number": "+15551230000"}},
        "phoneNumber": {"number": "+15559990000"},
        "endedReason": "customer-ended-call",
        "startedAt": "2024-07-15T10:00:00Z", "endedAt": "2024-07-15T10:01:10Z",
        "analysis": {"summary": "Asked for a quote."},
    }})
    .to_string()
}

async fn wait_for(received: &Received, n: usize, limit: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let got = received.0.lock().map(|all| all.len()).unwrap_or(0);
        if got >= n {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(started.elapsed() < limit, "{got} of {n} deliveries arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let paced_for = if ctx.quick { 10.0 } else { 30.0 };
    let backlog_events = if ctx.quick { 300 } else { 800 };
    let mut section = Section::new(
        "webhooks",
        format!(
            "outbound webhooks on PostgreSQL to a receiver on 127.0.0.1 answering at once; \
             backlog of {backlog_events} contacts created to {ENDPOINTS} endpoints, then \
             {CALLS_PER_S} calls/s for {paced_for:.0} s to one endpoint"
        ),
    );
    let raw = ctx.raw_baseline(16).await?;
    let client = reqwest::Client::new();

    // Backlog: events recorded while no process ran, then delivered by one service.
    let (receiver, received) = start_receiver().await?;
    let url = ctx.fresh_postgres("webhooks_backlog").await?;
    let quiet = Application::build(config(&url, false)?).await?;
    let org = create_org(&quiet, &receiver, ENDPOINTS).await?;
    // Contacts: events that start no other process, so the figure is the deliveries' alone.
    let meta = CommandMeta::new("system:bench").tenant(org);
    for n in 0..backlog_events {
        quiet
            .state()
            .organizations
            .execute(
                &org.to_string(),
                OrganizationCommand::CreateContact {
                    contact_id: format!("contact-{n}"),
                    phone_number: format!("+1555{n:07}"),
                    name: Some(format!("Driver {n}")),
                    email: None,
                    notes: None,
                    source: aggregates::organization::ContactSource::Manual,
                    actor: "system:bench".into(),
                },
                &meta,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    quiet.stop().await;
    let expected = backlog_events * ENDPOINTS;
    let app = Application::build(config(&url, true)?).await?;
    let took = wait_for(&received, expected, Duration::from_secs(180)).await?;
    let rate = expected as f64 / took.as_secs_f64().max(1e-9);
    section.row(
        Row::num(
            format!("deliveries/s, backlog of {expected} to {ENDPOINTS} endpoints"),
            rate,
            "deliveries/s",
        )
        .vs(Baseline::new(
            "raw INSERT rate, 16 writers",
            raw.rate,
            "ev/s",
        ))
        .target(Target::RatioAtLeast(0.14))
        .detail(json!({
            "deliveries": expected,
            "seconds": took.as_secs_f64(),
            "concurrency": app.state().config.process_concurrency,
        })),
    );
    app.stop().await;

    // Paced: 100 deliveries/s with ingest running.
    let (receiver, received) = start_receiver().await?;
    let url = ctx.fresh_postgres("webhooks_paced").await?;
    let app = Application::build(config(&url, true)?).await?;
    let org = create_org(&app, &receiver, 1).await?;
    let ingest = format!("http://127.0.0.1:{}/api/webhooks/vapi/{org}", app.port());
    let calls = (paced_for * CALLS_PER_S) as usize;
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for n in 0..calls {
        let (client, ingest) = (client.clone(), ingest.clone());
        let at = started + Duration::from_secs_f64(n as f64 / CALLS_PER_S);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let call = format!("paced-{n}");
            let acked = deliver(&client, &ingest, end_report(&call)).await?;
            // The events name our call id, derived from the organization and VAPI's.
            anyhow::Ok((callflex::webhooks::vapi::call_id(org, &call), acked))
        }));
    }
    let mut acks: HashMap<String, Instant> = HashMap::new();
    for task in tasks {
        let (call, acked) = task.await??;
        acks.insert(call, acked);
    }
    wait_for(&received, 2 * calls, Duration::from_secs(120)).await?;
    let mut latency = Samples::default();
    let all = received.0.lock().map(|all| all.clone()).unwrap_or_default();
    for (_, call, at) in &all {
        if let Some(acked) = acks.get(call) {
            latency.push(at.saturating_duration_since(*acked));
        }
    }
    section.row(
        Row::num(
            "event → receipt at 100 deliveries/s, p50",
            latency.pct_ms(50.0),
            "ms",
        )
        .detail(json!({"deliveries": all.len(), "samples": latency.summary()})),
    );
    section.row(
        Row::num(
            "event → receipt at 100 deliveries/s, p99",
            latency.pct_ms(99.0),
            "ms",
        )
        .target(Target::Below(500.0)),
    );
    section.note(format!(
        "paced: {} process runs took turns with the requests (the request path counted as \
         busy: `crate::foreground`)",
        app.state().foreground.yielded()
    ));
    app.stop().await;
    section.note(
        "a delivery is one process instance: its start, its outcome and its timer row are \
         recorded in one append; an endpoint's deliveries go one at a time, in log order",
    );
    Ok(section)
}
