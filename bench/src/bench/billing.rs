//! The `billing` section: usage metering with Stripe on 127.0.0.1 (a stub that answers meter
//! events at once and notes when each arrived). One subscribed organization on a plan with no
//! included minutes, so every call's minutes are overage reported to Stripe.
//!
//! - Backlog: calls ended while no process ran; then one service starts with the processes on
//!   and meters and reports them all: calls metered and reported per second, against the same
//!   run's raw INSERT/s. Every call appends to the one Subscription stream: the figure is that
//!   stream's ceiling.
//! - Paced: 8 calls/s ended through the VAPI webhook: the call end's 2xx → Stripe has its meter
//!   event, p50/p99 ("minutes, not a day, after the crossing": target p99 < 2 s).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregates::organization::OrganizationCommand;
use aggregates::subscription::{SubscriptionCommand, SubscriptionStatus};
use callflex::config::{Config, ProviderConfig, Secret};
use callflex::startup::Application;
use eventlog::CommandMeta;
use poem::web::{Data, Form};
use poem::{handler, post, EndpointExt, Route};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::processes::deliver;
use crate::report::{Baseline, Row, Samples, Section, Target};
use crate::Ctx;

const SECRET: &str = "bench";
const CALLS_PER_S: f64 = 8.0;
const PLANS: &str = r#"[{"id": "metered", "name": "Metered", "stripe_price_id": "price_metered",
    "included_minutes": 0, "overage_cents_per_minute": 10, "meter_event_name": "minutes"}]"#;

/// Identifier → when Stripe received its meter event.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<HashMap<String, Instant>>>);

#[handler]
fn meter(
    Data(received): Data<&Received>,
    Form(form): Form<HashMap<String, String>>,
) -> poem::web::Json<Value> {
    let identifier = form.get("identifier").cloned().unwrap_or_default();
    if let Ok(mut all) = received.0.lock() {
        all.entry(identifier.clone()).or_insert_with(Instant::now);
    }
    poem::web::Json(json!({"object": "billing.meter_event", "identifier": identifier}))
}

async fn start_stripe() -> anyhow::Result<(String, Received)> {
    let received = Received::default();
    let app = Route::new()
        .at("/v1/billing/meter_events", post(meter))
        .data(received.clone());
    Ok((crate::local::serve(app).await?, received))
}

fn config(url: &str, stripe: &str, processes: bool) -> anyhow::Result<Config> {
    let mut config = Config {
        database_url: url.to_string(),
        listen: "127.0.0.1:0".parse()?,
        vapi_webhook_secret: Some(Secret::new(SECRET)),
        processes_enabled: processes,
        stripe: ProviderConfig {
            base_url: stripe.to_string(),
            api_key: Some(Secret::new("sk_bench")),
        },
        plans: callflex::plans::Plans::parse(PLANS).map_err(|e| anyhow::anyhow!(e))?,
        ..Config::default()
    };
    config.keyring = Some(callflex::secrets::Keyring::parse(
        "bench:YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtMTI=",
    )?);
    Ok(config)
}

/// An organization with an active subscription on the metered plan; answers its id.
async fn subscribed_org(app: &Application) -> anyhow::Result<(Uuid, String)> {
    let org = Uuid::new_v4();
    let meta = CommandMeta::new("system:bench").tenant(org);
    let state = app.state();
    state
        .organizations
        .execute(
            &org.to_string(),
            OrganizationCommand::Create {
                id: org,
                name: "Bench Billing".into(),
                owner_user_id: "bench-owner".into(),
                owner_email: "owner@bench.test".into(),
                actor: "system:bench".into(),
            },
            &meta,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let subscription = format!("sub_{}", org.simple());
    let now = chrono::Utc::now().timestamp();
    for (n, command) in [
        SubscriptionCommand::CompleteCheckout {
            organization_id: org,
            customer_id: "cus_bench".into(),
            subscription_id: subscription.clone(),
            plan: Some("metered".into()),
            checkout_session_id: "cs_bench".into(),
            stripe_event_id: "evt_bench_1".into(),
            stripe_created: now,
        },
        SubscriptionCommand::SyncSubscription {
            organization_id: Some(org),
            customer_id: "cus_bench".into(),
            status: SubscriptionStatus::Active,
            plan: Some("metered".into()),
            price_id: Some("price_metered".into()),
            subscription_item_id: None,
            included_minutes: Some(0),
            current_period_start: Some(now - 86_400),
            current_period_end: Some(now + 29 * 86_400),
            cancel_at_period_end: false,
            stripe_event_id: "evt_bench_2".into(),
            stripe_created: now + 1,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let meta = CommandMeta::new("provider:stripe:bench")
            .tenant(org)
            .idempotency_key(format!("bench-sub-{n}"));
        state
            .subscriptions
            .execute(&subscription, command, &meta)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok((org, subscription))
}

fn end_report(call: &str) -> String {
    let ended = chrono::Utc::now();
    let started = ended - chrono::Duration::seconds(100);
    json!({"message": {
        "type": "end-of-call-report",
        "call": {"id": call, "type": "inboundPhoneCall", "customer": {"number": "+15551230000"}},
        "phoneNumber": {"number": "+15559990000"},
        "endedReason": "customer-ended-call",
        "startedAt": started.to_rfc3339(), "endedAt": ended.to_rfc3339(),
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
        anyhow::ensure!(
            started.elapsed() < limit,
            "{got} of {n} meter events arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let backlog = if ctx.quick { 150 } else { 400 };
    let paced_for = if ctx.quick { 10.0 } else { 20.0 };
    let mut section = Section::new(
        "billing",
        format!(
            "usage metering on PostgreSQL, Stripe stub on 127.0.0.1; backlog of {backlog} ended \
             calls of one subscription, then {CALLS_PER_S} calls/s for {paced_for:.0} s"
        ),
    );
    let raw = ctx.raw_baseline(16).await?;
    let client = reqwest::Client::new();

    // Backlog: calls ended while no process ran, then metered and reported by one service.
    let (stripe, received) = start_stripe().await?;
    let url = ctx.fresh_postgres("billing_backlog").await?;
    let quiet = Application::build(config(&url, &stripe, false)?).await?;
    let (org, _) = subscribed_org(&quiet).await?;
    let ingest = format!("http://127.0.0.1:{}/api/webhooks/vapi/{org}", quiet.port());
    for n in 0..backlog {
        deliver(&client, &ingest, end_report(&format!("backlog-{n}"))).await?;
    }
    quiet.stop().await;
    let app = Application::build(config(&url, &stripe, true)?).await?;
    let took = wait_for(&received, backlog, Duration::from_secs(300)).await?;
    section.row(
        Row::num(
            format!("calls metered and reported/s, backlog of {backlog} on one subscription"),
            backlog as f64 / took.as_secs_f64().max(1e-9),
            "calls/s",
        )
        .vs(Baseline::new(
            "raw INSERT rate, 16 writers",
            raw.rate,
            "ev/s",
        ))
        .detail(json!({"calls": backlog, "seconds": took.as_secs_f64()})),
    );
    app.stop().await;

    // Paced: call end → its meter event at Stripe.
    let (stripe, received) = start_stripe().await?;
    let url = ctx.fresh_postgres("billing_paced").await?;
    let app = Application::build(config(&url, &stripe, true)?).await?;
    let (org, subscription) = subscribed_org(&app).await?;
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
            anyhow::Ok((callflex::webhooks::vapi::call_id(org, &call), acked))
        }));
    }
    let mut acks = Vec::new();
    for task in tasks {
        acks.push(task.await??);
    }
    wait_for(&received, calls, Duration::from_secs(120)).await?;
    let arrived = received.0.lock().map(|all| all.clone()).unwrap_or_default();
    let mut latency = Samples::default();
    for (call, acked) in &acks {
        if let Some(at) = arrived.get(&format!("{subscription}:usage:{call}")) {
            latency.push(at.saturating_duration_since(*acked));
        }
    }
    section.row(
        Row::num(
            "call end → meter event at Stripe, p50",
            latency.pct_ms(50.0),
            "ms",
        )
        .detail(json!({"calls": calls, "samples": latency.summary()})),
    );
    section.row(
        Row::num(
            "call end → meter event at Stripe, p99",
            latency.pct_ms(99.0),
            "ms",
        )
        .target(Target::Below(2000.0)),
    );
    app.stop().await;
    section.note(
        "a call's metering is one process instance: its usage recorded on the subscription \
         (one stream per subscription: every call of the organization appends to it), then \
         the overage reported to Stripe with an identifier derived from the call",
    );
    Ok(section)
}
