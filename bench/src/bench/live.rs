//! The `live` section: the live feed (`GET /api/v1/events/stream`) under ingest.
//!
//! 1,000 SSE clients (10 in each of 100 organizations, each with its own API key) stay
//! connected to one service on PostgreSQL while 16 concurrent calls are ingested (closed loop)
//! into one of the organizations (an organization's clients share its channel). Measured: the event's receipt by a client
//! after the service received the delivery that recorded it (same clock), p50/p99 (target
//! p99 < 100 ms); ingest deliveries/s with the clients connected against the same run's
//! ingest without them and against raw INSERT/s.

use std::sync::Arc;
use std::time::Duration;

use aggregates::organization::{ApiKeyScope, OrganizationCommand};
use callflex::config::{Config, Secret};
use callflex::startup::Application;
use eventlog::CommandMeta;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::ingest::{closed_loop_rate, create_org, Endpoint};
use crate::report::{Baseline, Row, Samples, Section, Target};
use crate::Ctx;

const ORGS: usize = 100;
const CLIENTS_PER_ORG: usize = 10;
const CALLS: usize = 16;

/// An API key (read scope) for `org`; answers its secret.
async fn api_key(app: &Application, org: Uuid) -> anyhow::Result<String> {
    let secret = format!(
        "{}bench{}",
        callflex::auth::API_KEY_PREFIX,
        Uuid::new_v4().simple()
    );
    app.state()
        .organizations
        .execute(
            &org.to_string(),
            OrganizationCommand::CreateApiKey {
                key_id: Uuid::new_v4().to_string(),
                name: "live bench".into(),
                key_hash: callflex::auth::token_hash(&secret),
                scopes: vec![ApiKeyScope::Read],
                actor: "system:bench".into(),
            },
            &CommandMeta::new("system:bench").tenant(org),
        )
        .await
        .map_err(|e| anyhow::anyhow!("api key: {e}"))?;
    Ok(secret)
}

/// Opens a stream and notes, for each event, how long after its `at` it arrived.
async fn client(
    client: reqwest::Client,
    base: String,
    key: String,
    latency: Arc<Mutex<Samples>>,
) -> anyhow::Result<()> {
    let mut res = client
        .get(format!("{base}/api/v1/events/stream"))
        .bearer_auth(key)
        .send()
        .await?;
    anyhow::ensure!(
        res.status().is_success(),
        "stream answered {}",
        res.status()
    );
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = res.chunk().await {
        let now = chrono::Utc::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            for line in block.lines() {
                let Some(data) = line.strip_prefix("data: ") else {
                    continue;
                };
                let event: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                let at = event["at"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
                if let Some(at) = at {
                    let took = (now - at.with_timezone(&chrono::Utc))
                        .to_std()
                        .unwrap_or_default();
                    latency.lock().await.push(took);
                }
            }
        }
    }
    Ok(())
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let run_for = Duration::from_secs(if ctx.quick { 3 } else { 5 });
    let mut section = Section::new(
        "live",
        format!(
            "live feed on PostgreSQL: {} SSE clients ({CLIENTS_PER_ORG} in each of {ORGS} \
             organizations) while {CALLS} calls are ingested into one of them",
            ORGS * CLIENTS_PER_ORG
        ),
    );
    let raw = ctx.raw_baseline(16).await?;
    let url = ctx.fresh_postgres("live").await?;
    let config = Config {
        database_url: url,
        listen: "127.0.0.1:0".parse()?,
        vapi_webhook_secret: Some(Secret::new("bench")),
        processes_enabled: false,
        ..Config::default()
    };
    let app = Application::build(config).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let mut orgs = Vec::new();
    for _ in 0..ORGS {
        let org = create_org(&app).await?;
        orgs.push((org, api_key(&app, org).await?));
    }
    let head = app.state().store.head().await?;
    app.state()
        .wait_for_position(head, Duration::from_secs(30))
        .await?;
    let endpoint = Endpoint::vapi(app.port(), orgs[0].0);

    // Ingest alone, then with every client connected.
    let (alone, _) = closed_loop_rate(&endpoint, CALLS, run_for, 0).await;
    let latency = Arc::new(Mutex::new(Samples::default()));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(ORGS * CLIENTS_PER_ORG)
        .build()?;
    let mut tasks = Vec::new();
    for (_, key) in &orgs {
        for _ in 0..CLIENTS_PER_ORG {
            let task = client(http.clone(), base.clone(), key.clone(), latency.clone());
            tasks.push(tokio::spawn(task));
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.state().live.get().map_or(0, |h| h.clients()) < ORGS * CLIENTS_PER_ORG {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "only {} clients connected",
            app.state().live.get().map_or(0, |h| h.clients())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (with_clients, errors) = closed_loop_rate(&endpoint, CALLS, run_for, 1_000_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let samples = std::mem::take(&mut *latency.lock().await);
    section.row(
        Row::num(
            format!("ingest deliveries/s, {CALLS} calls, with the clients connected"),
            with_clients,
            "deliveries/s",
        )
        .vs(Baseline::new(
            "the same ingest without clients",
            alone,
            "deliveries/s",
        ))
        .detail(json!({"errors": errors, "raw_insert_rate": raw.rate,
                       "ratio_to_raw": with_clients / raw.rate.max(1e-9)})),
    );
    section.row(
        Row::num(
            "event committed → received by an SSE client, p50",
            samples.pct_ms(50.0),
            "ms",
        )
        .detail(json!({"samples": samples.summary()})),
    );
    section.row(
        Row::num(
            "event committed → received by an SSE client, p99",
            samples.pct_ms(99.0),
            "ms",
        )
        .target(Target::Below(100.0)),
    );
    section.row(
        Row::num(
            "ingest with the clients, against raw INSERT",
            with_clients,
            "deliveries/s",
        )
        .vs(Baseline::new(
            "raw INSERT rate, 16 writers",
            raw.rate,
            "ev/s",
        )),
    );
    for task in tasks {
        task.abort();
    }
    app.stop().await;
    section.note(
        "the latency is from the event's append (its `at`: the log's record time) to the \
         client's receipt, on the same clock; one channel per organization, so an event wakes \
         only its organization's clients",
    );
    Ok(section)
}
