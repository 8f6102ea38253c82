//! `kill -9` of the real service while ended calls are mid-processing: after a restart (or,
//! on PostgreSQL, the standby process taking over) every call is processed exactly once,
//! every email is sent under one idempotency key, every SMS once, and no step is lost.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Row;

use crate::child::{sign_up_over_http, ChildService};
use crate::helpers::{authed_client, vapi_message, VAPI_SECRET};
use crate::stubs::Stubs;

const CALLS: usize = 200;
const SMS_TO: &str = "+15550001111";
const EMAIL_TO: &str = "dispatch@crash.test";

async fn health(base: &str) -> Value {
    match reqwest::get(format!("{base}/health")).await {
        Ok(res) => res.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

fn process_active(health: &Value, kind: &str) -> bool {
    health["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["name"] == kind && p["active"] == true)
}

async fn count(pool: &sqlx::AnyPool, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(pool)
        .await
        .and_then(|r| r.try_get::<i64, _>(0))
        .unwrap_or(-1)
}

async fn post_calls(base: &str, org: &str) {
    let client = reqwest::Client::new();
    let mut pending = futures::stream::FuturesUnordered::new();
    use futures::StreamExt;
    for i in 0..CALLS {
        let body = vapi_message(
            "end-of-call-report",
            &format!("crash-{i}"),
            json!({
                "endedReason": "customer-ended-call",
                "startedAt": "2024-07-15T10:00:00Z",
                "endedAt": "2024-07-15T10:00:45Z",
                "analysis": {"summary": format!("Caller {i} asked for a quote.")},
            }),
        );
        let request = client
            .post(format!("{base}/api/webhooks/vapi/{org}"))
            .header("content-type", "application/json")
            .header("x-vapi-secret", VAPI_SECRET)
            .body(body)
            .send();
        pending.push(request);
        if pending.len() >= 16 {
            let res = pending.next().await.unwrap().expect("delivery");
            assert_eq!(res.status(), 200);
        }
    }
    while let Some(res) = pending.next().await {
        assert_eq!(res.expect("delivery").status(), 200);
    }
}

async fn killed_mid_processing_every_call_is_processed_once(backend: &str) {
    let stubs = Stubs::start(Duration::from_millis(50)).await;
    let url = eventlog::testing::fresh_url(backend).await;
    let mut env: Vec<(String, String)> = stubs.env();
    env.push(("PROCESS_CONCURRENCY".into(), "4".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut first = ChildService::start(&url, &env);
    for _ in 0..100 {
        if process_active(&health(&first.ops).await, "notification") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // On PostgreSQL a second process stands by and takes over; on SQLite the same file is
    // opened again after the kill.
    let standby = (backend == "postgres").then(|| ChildService::start(&url, &env));
    let email = format!("owner-{backend}@crash.test");
    let (token, org) = sign_up_over_http(&first.base, &url, &email).await;
    let res = authed_client(&token)
        .patch(format!("{}/api/v1/organizations/{org}", first.base))
        .json(&json!({"settings": {"notifications": {
            "sms_enabled": true, "sms_numbers": [SMS_TO],
            "email_enabled": true, "email_addresses": [EMAIL_TO],
        }}}))
        .send()
        .await
        .expect("settings");
    assert_eq!(res.status(), 200);
    if let Some(standby) = &standby {
        assert!(!process_active(&health(&standby.ops).await, "notification"));
    }

    post_calls(&first.base, &org).await;
    // Kill the worker mid-way: some texts out, most not.
    let deadline = Instant::now() + Duration::from_secs(60);
    while stubs.ledger.lock().unwrap().sms.len() < 30 {
        assert!(Instant::now() < deadline, "processing did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10));
    let sent_before = stubs.ledger.lock().unwrap().sms.len();
    assert!(
        sent_before < CALLS,
        "the kill came too late to prove anything"
    );
    let killed_at = Instant::now();
    let _restarted = match standby {
        Some(standby) => standby,
        None => ChildService::start(&url, &env),
    };

    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut resumed_after = None;
    loop {
        if resumed_after.is_none() && stubs.ledger.lock().unwrap().sms.len() > sent_before {
            resumed_after = Some(killed_at.elapsed());
        }
        let processed = count(
            &pool,
            "SELECT COUNT(*) FROM events WHERE event_type = 'CallProcessed'",
        )
        .await;
        let open = count(
            &pool,
            "SELECT COUNT(*) FROM process_work WHERE status NOT IN ('completed', 'failed')",
        )
        .await;
        let notifications = count(
            &pool,
            "SELECT COUNT(*) FROM process_work WHERE kind = 'notification'",
        )
        .await;
        if processed == CALLS as i64 && notifications == 2 * CALLS as i64 && open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not finished: {processed} processed, {notifications} notifications, {open} open"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "{backend}: {sent_before} SMS before the kill; the first after it {:?} later",
        resumed_after
    );

    // Every call processed once; every process completed; none failed.
    let distinct_processed = count(
        &pool,
        "SELECT COUNT(DISTINCT aggregate_id) FROM events WHERE event_type = 'CallProcessed'",
    )
    .await;
    assert_eq!(distinct_processed, CALLS as i64);
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM events WHERE event_type = 'CallAnalyzed'"
        )
        .await,
        CALLS as i64
    );
    assert_eq!(
        count(
            &pool,
            // The schedules' runs (every 5 minutes for the billing periods) complete
            // processes of their own when the test crosses the mark: not counted.
            "SELECT COUNT(*) FROM events WHERE event_type = 'ProcessCompleted' \
             AND aggregate_id NOT LIKE 'scheduled_run:%' \
             AND aggregate_id NOT LIKE 'billing_cycle:%'"
        )
        .await,
        3 * CALLS as i64
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM process_work WHERE status = 'failed'"
        )
        .await,
        0
    );
    pool.close().await;

    let ledger = stubs.ledger.lock().unwrap();
    // Emails: one idempotency key per call's email; Resend sends each key once.
    let mut keys: HashMap<&str, usize> = HashMap::new();
    for (path, headers, _) in &ledger.requests {
        if path == "/emails" {
            if let Some(key) = headers.get("idempotency-key") {
                if key.starts_with("notification:") {
                    *keys.entry(key.as_str()).or_default() += 1;
                }
            }
        }
    }
    assert_eq!(keys.len(), CALLS, "one email per call");
    let repeated = keys.values().filter(|n| **n > 1).count();
    println!("{backend}: {repeated} email request(s) repeated under their key after the kill");
    // SMS: each call's text exactly once (the in-doubt lookup found the ones already sent).
    let mut texts: HashMap<&str, usize> = HashMap::new();
    for (_, to, _, body) in &ledger.sms {
        assert_eq!(to, SMS_TO);
        *texts.entry(body.as_str()).or_default() += 1;
    }
    assert_eq!(texts.len(), CALLS, "one SMS per call");
    let doubled: Vec<_> = texts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "sent twice: {doubled:?}");
}

crate::both_backends!(killed_mid_processing_every_call_is_processed_once);
