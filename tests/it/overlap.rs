//! Overlapping, shuffled and repeated deliveries of one call: VAPI does not wait for one
//! answer before sending the call's next message and does not retry a 4xx, so none may be
//! refused, and the read models must not depend on the order the deliveries arrived in.

use std::sync::Arc;

use futures::stream::{self, StreamExt};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};

use crate::helpers::*;

fn tool_call(id: &str, name: &str, args: Value) -> Value {
    json!({ "id": id, "type": "function", "function": { "name": name, "arguments": args } })
}

/// A long call: statuses, `lines` final transcripts (and partials), three tool calls, a
/// speech update, hang and the end-of-call report.
pub fn long_call(call: &str, lines: usize) -> Vec<String> {
    let mut deliveries = vec![
        vapi_message("status-update", call, json!({"status": "ringing"})),
        vapi_message("status-update", call, json!({"status": "in-progress"})),
        vapi_message(
            "speech-update",
            call,
            json!({"status": "started", "role": "user"}),
        ),
    ];
    for i in 0..lines {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        let at = 1_721_000_001_000i64 + (i as i64) * 1_500;
        deliveries.push(vapi_message(
            "transcript",
            call,
            json!({"role": role, "transcriptType": "final",
                   "transcript": format!("line {i} of {call}"), "timestamp": at}),
        ));
        if i % 7 == 0 {
            deliveries.push(vapi_message(
                "transcript",
                call,
                json!({"role": role, "transcriptType": "partial",
                       "transcript": format!("line {i}"), "timestamp": at - 300}),
            ));
        }
    }
    deliveries.push(vapi_message(
        "tool-calls",
        call,
        json!({"toolCallList": [tool_call("tc-1", "logDriverCallout",
            json!({"driverName": "Sam", "reason": "sick", "expectedReturn": "Monday"}))]}),
    ));
    deliveries.push(vapi_message(
        "tool-calls",
        call,
        json!({"toolCallList": [tool_call("tc-2", "takeMessage",
            json!({"message": "call me back", "urgent": true, "messageFor": "Bob"}))]}),
    ));
    deliveries.push(vapi_message(
        "tool-calls",
        call,
        json!({"toolCallList": [tool_call("tc-3", "transferCall",
            json!({"destination": "dispatch", "reason": "load"}))]}),
    ));
    deliveries.push(vapi_message("hang", call, json!({})));
    deliveries.push(vapi_message(
        "end-of-call-report",
        call,
        json!({"endedReason": "customer-ended-call", "startedAt": "2024-07-15T10:00:00Z",
               "endedAt": "2024-07-15T10:02:30Z", "cost": 0.42,
               "artifact": {"transcript": "AI: hello\nUser: bye",
                            "recordingUrl": "https://rec.test/a.wav", "messages": []},
               "analysis": {"summary": "Driver Sam called out sick.", "successEvaluation": true}}),
    ));
    deliveries
}

/// Posts one delivery to `base` (one of the service processes); returns its status and body.
async fn post(client: &reqwest::Client, url: &str, body: String) -> (u16, String) {
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-vapi-secret", VAPI_SECRET)
        .body(body)
        .send()
        .await
        .expect("request");
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

/// Everything the dashboard shows of a call, with the ids that differ between two calls of
/// the same content replaced.
pub(crate) async fn read_models(app: &TestApp, vapi_call_id: &str) -> Value {
    let id = callflex::webhooks::vapi::call_id(app.org, vapi_call_id);
    let mut all = json!({});
    for part in ["", "/transcript", "/actions"] {
        let res = app
            .client
            .get(format!("{}/api/v1/calls/{id}{part}", app.base))
            .send()
            .await
            .expect("read");
        assert_eq!(res.status(), 200, "GET calls/{id}{part}");
        let mut body: Value = res.json().await.expect("json");
        body.as_object_mut().map(|b| b.remove("position"));
        all[part] = body;
    }
    let text = all
        .to_string()
        .replace(&id, "<id>")
        .replace(vapi_call_id, "<call>");
    let mut normalized: Value = serde_json::from_str(&text).expect("json");
    strip_times(&mut normalized);
    normalized
}

/// Drops the times the service records on arrival (they differ between any two runs).
fn strip_times(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for key in ["created_at", "updated_at", "recorded_at"] {
                map.remove(key);
            }
            map.values_mut().for_each(strip_times);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_times),
        _ => {}
    }
}

const CALLS: usize = 3;
const LINES: usize = 60;

/// Plays every call's deliveries shuffled (a few twice) with `k` of each call in flight,
/// spread over `urls` (one per service process); returns every non-2xx answer.
async fn play(urls: &[String], prefix: &str, k: usize, seed: u64) -> Vec<(u16, String)> {
    let client = reqwest::Client::new();
    let urls = Arc::new(urls.to_vec());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut calls = Vec::new();
    for c in 0..CALLS {
        let mut deliveries = long_call(&format!("{prefix}-{c}"), LINES);
        let repeated: Vec<String> = deliveries.iter().step_by(9).cloned().collect();
        deliveries.extend(repeated);
        deliveries.shuffle(&mut rng);
        calls.push(deliveries);
    }
    let per_call = calls.into_iter().map(|deliveries| {
        let (client, urls) = (client.clone(), urls.clone());
        async move {
            stream::iter(deliveries.into_iter().enumerate())
                .map(|(i, body)| {
                    let url = urls[i % urls.len()].clone();
                    let client = client.clone();
                    async move { post(&client, &url, body).await }
                })
                .buffer_unordered(k)
                .filter(|(status, _)| std::future::ready(!(200..300).contains(status)))
                .collect::<Vec<_>>()
                .await
        }
    });
    futures::future::join_all(per_call)
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn check_against_in_order(app: &TestApp, prefix: &str) {
    // The post-call processing runs too: compare once every instance has finished.
    app.processes_done().await;
    app.settle().await;
    for c in 0..CALLS {
        let expected = read_models(app, &format!("in-order-{c}")).await;
        let got = read_models(app, &format!("{prefix}-{c}")).await;
        assert_eq!(
            got, expected,
            "{prefix}-{c}: read models differ from the in-order run"
        );
    }
}

async fn deliver_in_order(app: &TestApp) {
    for c in 0..CALLS {
        for body in long_call(&format!("in-order-{c}"), LINES) {
            app.vapi_ok(&body).await;
        }
    }
}

async fn overlapping_shuffled_deliveries_are_never_refused_and_read_models_match(backend: &str) {
    let app = spawn_app(backend).await;
    deliver_in_order(&app).await;
    let url = format!("{}/api/webhooks/vapi/{}", app.base, app.org);
    for k in [1, 4, 16, 64] {
        let prefix = format!("k{k}");
        let refused = play(std::slice::from_ref(&url), &prefix, k, k as u64).await;
        assert!(
            refused.is_empty(),
            "K = {k}: {} deliveries refused, first: {:?}",
            refused.len(),
            refused.first()
        );
        check_against_in_order(&app, &prefix).await;
    }
    app.app.stop().await;
}

/// Two service instances on one PostgreSQL database, each with its own in-process turns and
/// caches: their deliveries of one call conflict at the database and are retried.
async fn two_services_on_one_database_never_refuse_overlapping_deliveries(backend: &str) {
    let app = spawn_app(backend).await;
    let mut config = app.app.state().config.clone();
    config.listen = "127.0.0.1:0".parse().expect("address");
    let second = callflex::startup::Application::build(config)
        .await
        .expect("second instance");
    deliver_in_order(&app).await;
    let urls = [
        app.base.clone(),
        format!("http://127.0.0.1:{}", second.port()),
    ]
    .map(|base| format!("{base}/api/webhooks/vapi/{}", app.org));
    for k in [4, 16, 64] {
        let prefix = format!("two-k{k}");
        let refused = play(&urls, &prefix, k, 100 + k as u64).await;
        assert!(
            refused.is_empty(),
            "K = {k}: {} deliveries refused, first: {:?}",
            refused.len(),
            refused.first()
        );
        check_against_in_order(&app, &prefix).await;
    }
    second.stop().await;
    app.app.stop().await;
}

crate::both_backends!(
    overlapping_shuffled_deliveries_are_never_refused_and_read_models_match,
    two_services_on_one_database_never_refuse_overlapping_deliveries,
);
