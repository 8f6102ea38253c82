//! Stopping the real binary: SIGTERM (Docker, systemd, Kubernetes) and SIGINT take the same
//! graceful path, and a 2xx always means the delivery's raw body is durable, even under
//! `kill -9`.

use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde_json::json;
use sqlx::Row;

use crate::child::{sign_up_over_http, ChildService};
use crate::helpers::{vapi_message, VAPI_SECRET};

/// Sends `count` distinct deliveries, `concurrency` at a time; returns the bodies answered
/// 2xx (the others failed: refused connections once the process stops).
async fn deliver(
    base: &str,
    org: &str,
    tag: &str,
    count: usize,
    concurrency: usize,
) -> Vec<String> {
    // A bounded wait per request: a request caught by the stop must fail, not hang the test.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    let url = format!("{base}/api/webhooks/vapi/{org}");
    stream::iter(0..count)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            let body = vapi_message(
                "transcript",
                &format!("{tag}-call-{}", i % 8),
                json!({"role": "user", "transcriptType": "final",
                       "transcript": format!("{tag} line {i}"), "timestamp": 1_721_000_000_000i64 + i as i64}),
            );
            async move {
                let res = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-vapi-secret", VAPI_SECRET)
                    .body(body.clone())
                    .send()
                    .await;
                match res {
                    Ok(res) if res.status().is_success() => Some(body),
                    _ => None,
                }
            }
        })
        .buffer_unordered(concurrency)
        .filter_map(std::future::ready)
        .collect()
        .await
}

/// How many of `bodies` the raw-delivery ledger holds.
async fn in_ledger(database_url: &str, bodies: &[String]) -> usize {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database_url).await.expect("connect");
    let rows = sqlx::query("SELECT body FROM webhook_deliveries WHERE provider = 'vapi'")
        .fetch_all(&pool)
        .await
        .expect("ledger");
    let stored: std::collections::HashSet<String> = rows
        .iter()
        .filter_map(|r| r.try_get::<String, _>(0).ok())
        .collect();
    pool.close().await;
    bodies.iter().filter(|b| stored.contains(*b)).count()
}

async fn stopped_by(signal: &str, backend: &str) {
    let url = eventlog::testing::fresh_url(backend).await;
    let mut service = ChildService::start(&url, &[]);
    let (_, org) = sign_up_over_http(&service.base, &url, "owner@child.test").await;
    let base = service.base.clone();
    let load = tokio::spawn({
        let org = org.clone();
        async move { deliver(&base, &org, "stop", 3_000, 16).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    service.signal(signal);
    let acknowledged = load.await.expect("load");
    let status = tokio::task::spawn_blocking(move || {
        let status = service.wait_exit(Duration::from_secs(30));
        (status, service.output())
    })
    .await
    .expect("wait");
    let (status, output) = status;
    assert!(
        status.success(),
        "SIG{signal} must end the service cleanly, got {status:?}; output:\n{output}"
    );
    assert!(
        output.contains(&format!("SIG{signal}")),
        "the shutdown is logged: {output}"
    );
    assert!(
        !acknowledged.is_empty(),
        "some deliveries were acknowledged"
    );
    assert_eq!(
        in_ledger(&url, &acknowledged).await,
        acknowledged.len(),
        "every acknowledged delivery is in the raw ledger"
    );
}

async fn sigterm_and_sigint_stop_the_service_gracefully(backend: &str) {
    stopped_by("TERM", backend).await;
    stopped_by("INT", backend).await;
}

/// `kill -9` under load: every delivery answered 2xx has its raw body in the ledger.
async fn a_killed_service_has_kept_the_raw_body_of_every_acknowledged_delivery(backend: &str) {
    let url = eventlog::testing::fresh_url(backend).await;
    let service = ChildService::start(&url, &[]);
    let (_, org) = sign_up_over_http(&service.base, &url, "owner@child.test").await;
    let base = service.base.clone();
    let load = tokio::spawn(async move { deliver(&base, &org, "kill", 5_000, 16).await });
    tokio::time::sleep(Duration::from_millis(600)).await;
    service.signal("KILL");
    let acknowledged = load.await.expect("load");
    drop(service);
    assert!(
        !acknowledged.is_empty(),
        "some deliveries were acknowledged"
    );
    assert_eq!(
        in_ledger(&url, &acknowledged).await,
        acknowledged.len(),
        "an acknowledged delivery's raw body was lost"
    );
}

crate::both_backends!(
    sigterm_and_sigint_stop_the_service_gracefully,
    a_killed_service_has_kept_the_raw_body_of_every_acknowledged_delivery,
);
