//! `kill -9` of the real service during 2,100 outbound webhook deliveries: after a restart
//! (or, on PostgreSQL, the standby taking over) every event reaches every subscribed
//! endpoint; a delivery id reaches a receiver twice only where the crash fell between its
//! send and its record (at most one per endpoint: an endpoint's deliveries go one at a time).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::child::{sign_up_over_http, ChildService};
use crate::helpers::{authed_client, vapi_message, VAPI_SECRET};

const CALLS: usize = 700;

async fn process_active(base: &str) -> bool {
    let Ok(res) = reqwest::get(format!("{base}/health")).await else {
        return false;
    };
    let health: Value = res.json().await.unwrap_or(Value::Null);
    health["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["name"] == "webhook" && p["active"] == true)
}

/// (path, webhook-id) of every request the receiver got.
async fn received(receiver: &MockServer) -> Vec<(String, String)> {
    receiver
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let id = r
                .headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            (r.url.path().to_string(), id)
        })
        .collect()
}

async fn post_calls(base: &str, org: &str) {
    use futures::StreamExt;
    let client = reqwest::Client::new();
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..CALLS {
        let body = vapi_message(
            "end-of-call-report",
            &format!("hook-{i}"),
            json!({
                "endedReason": "customer-ended-call",
                "startedAt": "2024-07-15T10:00:00Z",
                "endedAt": "2024-07-15T10:00:45Z",
                "analysis": {"summary": format!("Caller {i} asked for a quote.")},
            }),
        );
        pending.push(
            client
                .post(format!("{base}/api/webhooks/vapi/{org}"))
                .header("content-type", "application/json")
                .header("x-vapi-secret", VAPI_SECRET)
                .body(body)
                .send(),
        );
        if pending.len() >= 16 {
            let res = pending.next().await.unwrap().expect("delivery");
            assert_eq!(res.status(), 200);
        }
    }
    while let Some(res) = pending.next().await {
        assert_eq!(res.expect("delivery").status(), 200);
    }
}

async fn killed_mid_delivery_every_event_reaches_every_endpoint(backend: &str) {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let url = eventlog::testing::fresh_url(backend).await;
    let env = [
        ("CALLFLEX_WEBHOOK_ALLOW_HTTP", "1"),
        ("CALLFLEX_WEBHOOK_ALLOW_PRIVATE", "1"),
    ];
    let mut first = ChildService::start(&url, &env);
    for _ in 0..100 {
        if process_active(&first.ops).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let standby = (backend == "postgres").then(|| ChildService::start(&url, &env));
    let email = format!("owner-{backend}@hooks.test");
    let (token, org) = sign_up_over_http(&first.base, &url, &email).await;
    let client = authed_client(&token);
    for (path, types) in [
        ("a", json!(["call.started", "call.ended"])),
        ("b", json!(["call.ended"])),
    ] {
        let res = client
            .post(format!("{}/api/v1/webhook-endpoints", first.base))
            .json(&json!({ "url": format!("{}/{path}", receiver.uri()), "event_types": types }))
            .send()
            .await
            .expect("endpoint");
        assert_eq!(res.status(), 201);
    }
    let expected = 3 * CALLS;
    post_calls(&first.base, &org).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received(&receiver).await.len() < 300 {
        assert!(Instant::now() < deadline, "deliveries did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10));
    let before = received(&receiver).await.len();
    assert!(
        before < expected,
        "the kill came too late to prove anything"
    );
    let killed_at = Instant::now();
    let _restarted = match standby {
        Some(standby) => standby,
        None => ChildService::start(&url, &env),
    };
    let mut resumed_after = None;
    let deadline = Instant::now() + Duration::from_secs(180);
    let got = loop {
        let got = received(&receiver).await;
        if resumed_after.is_none() && got.len() > before {
            resumed_after = Some(killed_at.elapsed());
        }
        let distinct: std::collections::HashSet<_> = got.iter().collect();
        if distinct.len() >= expected {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {expected} deliveries arrived",
            distinct.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut seen: HashMap<&(String, String), usize> = HashMap::new();
    for request in &got {
        *seen.entry(request).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    let per_path = |p: &str| seen.keys().filter(|(path, _)| path == p).count();
    assert_eq!(
        per_path("/a"),
        2 * CALLS,
        "every start and end reached endpoint a"
    );
    assert_eq!(per_path("/b"), CALLS, "every end reached endpoint b");
    println!(
        "{backend}: {before} deliveries before the kill; the first after it {resumed_after:?} \
         later; {} delivered twice: {twice:?}",
        twice.len()
    );
    // In flight at the kill: at most one per endpoint (a lane sends one at a time).
    assert!(twice.len() <= 2, "delivered twice: {twice:?}");
    assert!(twice.iter().all(|(_, n)| **n == 2));
}

crate::both_backends!(killed_mid_delivery_every_event_reaches_every_endpoint);
