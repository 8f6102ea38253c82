//! The live feed (`GET /api/v1/events/stream`, server-sent events) on both backends: a client
//! disconnected by a service restart reconnects with `Last-Event-ID` and, across the two
//! connections, receives every feed event of its organization exactly once, in log order,
//! and nothing of another organization's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

/// (id, event type, data) of each event a stream delivered.
type Got = Arc<Mutex<Vec<(i64, String, Value)>>>;

/// Opens the stream (from `last_event_id` when given) and collects its events until it ends.
async fn listen(base: &str, token: &str, last_event_id: Option<i64>) -> Got {
    let mut request = reqwest::Client::new()
        .get(format!("{base}/api/v1/events/stream"))
        .bearer_auth(token);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let mut res = request.send().await.expect("stream");
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let got: Got = Arc::default();
    let sink = got.clone();
    tokio::spawn(async move {
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = res.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, String::new(), Value::Null);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        kind = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(v).unwrap_or(Value::Null);
                    }
                }
                if let Some(id) = id {
                    sink.lock().unwrap().push((id, kind, data));
                }
            }
        }
    });
    got
}

fn call(id: &str) -> Vec<String> {
    vec![
        vapi_message("status-update", id, json!({"status": "in-progress"})),
        vapi_message(
            "transcript",
            id,
            json!({"role": "user", "transcriptType": "final", "transcript": "I'm running late",
                   "timestamp": 1_721_000_001_000i64}),
        ),
        vapi_message(
            "end-of-call-report",
            id,
            json!({"endedReason": "customer-ended-call", "startedAt": "2024-07-15T10:00:00Z",
                   "endedAt": "2024-07-15T10:01:00Z"}),
        ),
    ]
}

async fn post_call(base: &str, org: &str, id: &str) {
    let client = reqwest::Client::new();
    for body in call(id) {
        let res = client
            .post(format!("{base}/api/webhooks/vapi/{org}"))
            .header("content-type", "application/json")
            .header("x-vapi-secret", VAPI_SECRET)
            .body(body)
            .send()
            .await
            .expect("delivery");
        assert_eq!(res.status(), 200);
    }
}

/// The positions of the organization's events the feed shows, from the log.
async fn expected(app: &TestApp) -> Vec<i64> {
    let types = callflex::live::FEED_EVENT_TYPES
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT global_position FROM events WHERE tenant_id = '{}' AND event_type IN ({types}) \
         ORDER BY global_position",
        app.org
    );
    sqlx::query_scalar(&sql)
        .fetch_all(app.app.state().store.pool())
        .await
        .expect("positions")
}

async fn wait_for(got: &Got, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.lock().unwrap().len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} events arrived: {:?}",
            got.lock().unwrap().len(),
            got.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_reconnect_after_a_restart_gets_every_event_once(backend: &str) {
    let first = spawn_app_with(backend, |c| c.processes_enabled = false).await;
    let org = first.org.to_string();
    let token = first.token.clone();
    let config = first.app.state().config.clone();
    // Another organization's calls must never show.
    let other = sign_up(&first.app, "other@else.test", Some("Else Co")).await;
    let other_org = other["organization"]["id"].as_str().unwrap().to_string();

    let got = listen(&first.base, &token, None).await;
    post_call(&first.base, &org, "live-1").await;
    post_call(&first.base, &other_org, "elsewhere-1").await;
    post_call(&first.base, &org, "live-2").await;
    let so_far = expected(&first).await;
    assert!(so_far.len() >= 6, "{so_far:?}");
    wait_for(&got, so_far.len()).await;
    let kinds: Vec<String> = got
        .lock()
        .unwrap()
        .iter()
        .map(|(_, k, _)| k.clone())
        .collect();
    for kind in [
        "call.started",
        "call.status",
        "transcript.segment",
        "call.ended",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    let segment = got
        .lock()
        .unwrap()
        .iter()
        .find(|(_, k, _)| k == "transcript.segment")
        .map(|(_, _, d)| d.clone())
        .unwrap();
    assert_eq!(segment["data"]["text"], "I'm running late");

    // The service restarts; calls arrive while the client is away.
    let last = got.lock().unwrap().last().map(|(id, _, _)| *id).unwrap();
    first.app.stop().await;
    let app = callflex::startup::Application::build(config)
        .await
        .expect("restart");
    let base = format!("http://127.0.0.1:{}", app.port());
    post_call(&base, &org, "while-away").await;
    let again = listen(&base, &token, Some(last)).await;
    post_call(&base, &org, "after-reconnect").await;
    let ops = format!("http://127.0.0.1:{}", app.operator_port().unwrap_or(0));
    let restarted = TestApp {
        app,
        base,
        ops,
        client: authed_client(&token),
        org: first.org,
        token: token.clone(),
        user_id: first.user_id.clone(),
    };
    let all = expected(&restarted).await;
    let before = got.lock().unwrap().len();
    wait_for(&again, all.len() - before).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids: Vec<i64> = got.lock().unwrap().iter().map(|(id, _, _)| *id).collect();
    ids.extend(again.lock().unwrap().iter().map(|(id, _, _)| *id));
    assert_eq!(
        ids, all,
        "every event once, in log order, and no other organization's"
    );
    // A bad Last-Event-ID is refused; no credential is refused.
    let res = reqwest::Client::new()
        .get(format!("{}/api/v1/events/stream", restarted.base))
        .bearer_auth(&token)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = reqwest::Client::new()
        .get(format!("{}/api/v1/events/stream", restarted.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

crate::both_backends!(a_reconnect_after_a_restart_gets_every_event_once);
