//! Two real service processes on one PostgreSQL database: the second one's projectors stand
//! by, following the active ones' checkpoints, so writes on either answer in normal time and
//! reads see them; when the active process is killed the standby takes over and nothing is
//! skipped.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::child::{sign_up_over_http, ChildService};
use crate::helpers::authed_client;

async fn health(base: &str) -> Value {
    reqwest::get(format!("{base}/health"))
        .await
        .expect("health")
        .json()
        .await
        .expect("json")
}

/// Creates a contact through `base` and reads it back with read-your-writes; returns how
/// long the two took.
async fn write_and_read(client: &reqwest::Client, base: &str, phone: &str) -> Duration {
    let started = Instant::now();
    let res = client
        .post(format!("{base}/api/v1/contacts"))
        .json(&json!({ "phone_number": phone, "name": "Standby" }))
        .send()
        .await
        .expect("create");
    assert_eq!(
        res.status(),
        201,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let created: Value = res.json().await.expect("json");
    let position = created["position"].as_i64().expect("position");
    let res = client
        .get(format!("{base}/api/v1/contacts?min_position={position}"))
        .send()
        .await
        .expect("list");
    assert_eq!(res.status(), 200);
    let list: Value = res.json().await.expect("json");
    assert!(list.to_string().contains(phone), "{list}");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_process_answers_in_normal_time_and_takes_over_when_the_active_one_dies() {
    let url = eventlog::testing::fresh_url("postgres").await;
    let mut first = ChildService::start(&url, &[]);
    // The first process holds every projector before the second starts.
    for _ in 0..100 {
        if health(&first.ops).await["role"] == "active" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = ChildService::start(&url, &[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(health(&first.ops).await["role"], "active");
    assert_eq!(health(&second.ops).await["role"], "standby");

    // Sign-up waits for the read models: on the standby too, in normal time.
    let started = Instant::now();
    let (token, _) = sign_up_over_http(&second.base, &url, "owner@standby.test").await;
    let sign_up = started.elapsed();
    let client = authed_client(&token);
    let mut took = Vec::new();
    for i in 0..5 {
        took.push(write_and_read(&client, &second.base, &format!("+1555000{i:04}")).await);
        took.push(write_and_read(&client, &first.base, &format!("+1555100{i:04}")).await);
    }
    let slowest = took.iter().max().copied().unwrap_or_default();
    // A stalled standby waits out the whole read-your-writes wait (5 s) on every write; the
    // bound sits just under it, since CI's loaded cores took 2.2 s once without a stall.
    let stall = Duration::from_millis(4_500);
    assert!(
        sign_up < stall && slowest < stall,
        "the standby stalls: sign-up {sign_up:?}, slowest write+read {slowest:?}"
    );

    // The active process dies; the standby takes over within seconds.
    first.signal("KILL");
    let _ = first.wait_exit(Duration::from_secs(10));
    let died = Instant::now();
    loop {
        if health(&second.ops).await["role"] == "active" {
            break;
        }
        assert!(
            died.elapsed() < Duration::from_secs(10),
            "no takeover: {}",
            health(&second.ops).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing skipped: every contact written through either process is there, and new
    // writes are projected by the new active process.
    write_and_read(&client, &second.base, "+15552000000").await;
    let list: Value = client
        .get(format!("{}/api/v1/contacts?limit=100", second.base))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let count = list["data"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(count, 11, "{list}");
    let health = health(&second.ops).await;
    for projector in health["projectors"].as_array().expect("projectors") {
        assert_eq!(projector["lag"], 0, "{health}");
    }
}
