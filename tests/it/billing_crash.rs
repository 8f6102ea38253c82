//! `kill -9` of the real service while calls past the plan's minutes are metered, with two
//! service processes on PostgreSQL: every overage minute reaches Stripe once (no meter event
//! identifier is ever sent again under a new request, none is lost), and the 80% and 100%
//! alerts go out once each.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::child::{sign_up_over_http, ChildService};
use crate::helpers::{authed_client, vapi_message, VAPI_SECRET};
use crate::stripe_stub::{complete_checkout, StripeStub};
use crate::stubs::Stubs;

const CALLS: usize = 120;
const INCLUDED: i64 = 5;
const PLANS: &str = r#"[{"id": "tiny", "name": "Tiny", "stripe_price_id": "price_tiny",
    "included_minutes": 5, "overage_cents_per_minute": 15, "meter_event_name": "callflex_minutes"}]"#;

async fn post_calls(bases: &[String], org: &str) {
    use futures::StreamExt;
    let client = reqwest::Client::new();
    let mut pending = futures::stream::FuturesUnordered::new();
    let ended = chrono::Utc::now() - chrono::Duration::minutes(5);
    let started = ended - chrono::Duration::seconds(120);
    for i in 0..CALLS {
        let body = vapi_message(
            "end-of-call-report",
            &format!("metered-{i}"),
            json!({
                "endedReason": "customer-ended-call",
                "startedAt": started.to_rfc3339(),
                "endedAt": ended.to_rfc3339(),
            }),
        );
        let base = &bases[i % bases.len()];
        pending.push(
            client
                .post(format!("{base}/api/webhooks/vapi/{org}"))
                .header("content-type", "application/json")
                .header("x-vapi-secret", VAPI_SECRET)
                .body(body)
                .send(),
        );
        if pending.len() >= 8 {
            let res = pending.next().await.unwrap().expect("delivery");
            assert_eq!(res.status(), 200);
        }
    }
    while let Some(res) = pending.next().await {
        assert_eq!(res.expect("delivery").status(), 200);
    }
}

async fn count(url: &str, sql: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.expect("connect");
    let n: i64 = sqlx::query_scalar(sql)
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    n
}

async fn killed_while_metering_every_overage_minute_is_billed_once(backend: &str) {
    let stripe = StripeStub::start().await;
    let stubs = Stubs::start(Duration::ZERO).await;
    let url = eventlog::testing::fresh_url(backend).await;
    let mut env: Vec<(String, String)> = stripe.env();
    env.extend(stubs.env());
    env.push(("CALLFLEX_PLANS".into(), PLANS.into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut first = ChildService::start(&url, &env);
    let second = (backend == "postgres").then(|| ChildService::start(&url, &env));
    let email = format!("owner-{backend}@metered.test");
    let (token, org) = sign_up_over_http(&first.base, &url, &email).await;
    let client = authed_client(&token);
    let res = client
        .post(format!("{}/api/v1/billing/checkout", first.base))
        .json(&json!({"plan": "tiny"}))
        .send()
        .await
        .expect("checkout");
    assert_eq!(res.status(), 200);
    let session: Value = res.json().await.expect("session");
    let session = session["data"]["id"].as_str().expect("id").to_string();
    let now = chrono::Utc::now().timestamp();
    let period = (now - 86_400, now + 29 * 86_400);
    complete_checkout(
        (&first.base, &org),
        &session,
        "cus_test_1",
        "tiny",
        "price_tiny",
        period,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let billing: Value = client
            .get(format!("{}/api/v1/billing", first.base))
            .send()
            .await
            .expect("billing")
            .json()
            .await
            .expect("json");
        if billing["data"]["status"] == "active" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the subscription did not activate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Some reports fail first; a kill falls in the middle of the rest.
    stripe.fail_first("/v1/billing/meter_events", &[500, 503, 500]);
    let bases: Vec<String> = std::iter::once(first.base.clone())
        .chain(second.as_ref().map(|s| s.base.clone()))
        .collect();
    post_calls(&bases, &org).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while stripe.meter_events().len() < 20 {
        assert!(Instant::now() < deadline, "metering did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10));
    let before = stripe.meter_events().len();
    let _restarted = ChildService::start(&url, &env);
    let expected = CALLS as i64 * 2 - INCLUDED;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let billed: i64 = stripe.meter_events().values().sum();
        if billed >= expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{billed} of {expected} overage minutes reached Stripe"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give a duplicate time to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let billed: i64 = stripe.meter_events().values().sum();
    assert_eq!(billed, expected, "every overage minute billed once");
    let refused: Vec<_> = stripe
        .requests_to("/v1/billing/meter_events")
        .into_iter()
        .filter(|s| s.status == 400)
        .collect();
    assert!(
        refused.is_empty(),
        "an identifier was sent again under a new key: {refused:?}"
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM events WHERE event_type = 'UsageThresholdReached'"
        )
        .await,
        2
    );
    let alert_keys: std::collections::BTreeSet<String> = stubs
        .notification_emails()
        .into_iter()
        .filter(|(_, _, body)| body.contains("of your plan's minutes used"))
        .filter_map(|(_, headers, _)| headers.get("idempotency-key").cloned())
        .collect();
    assert_eq!(
        alert_keys.len(),
        2,
        "one email per threshold: {alert_keys:?}"
    );
    println!(
        "{backend}: {before} of {} meter events before the kill; {} requests in all",
        stripe.meter_events().len(),
        stripe.requests_to("/v1/billing/meter_events").len()
    );
}

crate::both_backends!(killed_while_metering_every_overage_minute_is_billed_once);
