//! Outbound webhooks against a local receiver that fails on purpose, on both backends: the
//! seed's schedule followed on a clock the test moves, Standard Webhooks signatures checked
//! by an independent implementation, dead letters, 410, retry, replay, log order.

use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

async fn spawn(backend: &str, disable_after: i64) -> TestApp {
    spawn_app_with(backend, |c| {
        c.egress.allow_http = true;
        c.egress.allow_private = true;
        c.webhook_disable_after = disable_after;
    })
    .await
}

async fn get(app: &TestApp, path: &str) -> Value {
    let res = app
        .client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "GET {path}: {status} {body}");
    body
}

/// Creates an endpoint for `types`; answers its id and secret.
async fn endpoint(app: &TestApp, url: &str, types: &[&str]) -> (String, String) {
    let (status, body) = app
        .post_json(
            "/api/v1/webhook-endpoints",
            json!({ "url": url, "event_types": types, "description": "CRM" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let secret = body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    (body["data"]["id"].as_str().unwrap().to_string(), secret)
}

async fn contact(app: &TestApp, n: u32) -> String {
    let (status, body) = app
        .post_json(
            "/api/v1/contacts",
            json!({ "phone_number": format!("+1555000{n:04}"), "name": format!("Driver {n}") }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn wait_requests(server: &MockServer, n: usize) -> Vec<wiremock::Request> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = server.received_requests().await.unwrap_or_default();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} deliveries arrived",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count_after(server: &MockServer, wait: Duration) -> usize {
    tokio::time::sleep(wait).await;
    server.received_requests().await.unwrap_or_default().len()
}

/// The Standard Webhooks check, written here from the scheme (not with the service's code).
fn verify_independently(secret: &str, request: &wiremock::Request) -> Value {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("{name} header"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let (id, timestamp, signatures) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&request.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert!(
        signatures.split(' ').any(|s| s == expected),
        "no signature by this secret in {signatures}"
    );
    let age = chrono::Utc::now().timestamp() - timestamp.parse::<i64>().unwrap();
    assert!(age.abs() <= 300, "timestamp {age} s off");
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["id"], id, "webhook-id is the event id");
    body
}

async fn endpoints_are_managed_with_published_event_types_only(backend: &str) {
    // The production egress policy: https to public addresses only.
    let app = spawn_app(backend).await;
    let types = get(&app, "/api/v1/webhook-endpoints/event-types").await;
    let names: Vec<&str> = types["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for expected in [
        "call.started",
        "call.ended",
        "call.processed",
        "call.action.created",
        "contact.created",
        "contact.updated",
        "usage.threshold_reached",
    ] {
        assert!(names.contains(&expected), "{expected} is published");
    }
    let (status, body) = app
        .post_json(
            "/api/v1/webhook-endpoints",
            json!({ "url": "https://crm.example.com/h", "event_types": ["totally.bogus"] }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "unknown_event_type", "{body}");
    let (status, body) = app
        .post_json(
            "/api/v1/webhook-endpoints",
            json!({ "url": "https://169.254.169.254/latest", "event_types": ["call.ended"] }),
        )
        .await;
    assert_eq!(status, 422, "cloud metadata is refused: {body}");
    let (id, _) = endpoint(
        &app,
        "https://crm.example.com/h",
        &["call.ended", "contact.created"],
    )
    .await;
    let listed = get(&app, "/api/v1/webhook-endpoints").await;
    assert_eq!(listed["data"][0]["id"], id.as_str());
    assert!(
        listed["data"][0].get("secret").is_none(),
        "the secret is shown once"
    );
    let (status, body) = app
        .patch_json(
            &format!("/api/v1/webhook-endpoints/{id}"),
            json!({ "enabled": false, "event_types": ["call.processed"] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["enabled"], false);
    assert_eq!(body["data"]["event_types"], json!(["call.processed"]));
    let (status, body) = app
        .post_json(
            &format!("/api/v1/webhook-endpoints/{id}/rotate-secret"),
            json!({ "overlap_hours": 2 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["secret"].as_str().unwrap().starts_with("whsec_"));
    let member = app.join_as("member@acme.test", "member").await;
    let res = member
        .get(format!("{}/api/v1/webhook-endpoints", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = app
        .client
        .delete(format!("{}/api/v1/webhook-endpoints/{id}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .get(format!("{}/api/v1/webhook-endpoints/{id}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

async fn a_failing_receiver_gets_the_schedule_then_a_dead_letter(backend: &str) {
    let app = spawn(backend, 1).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("down for maintenance"))
        .mount(&receiver)
        .await;
    let (id, secret) = endpoint(
        &app,
        &format!("{}/hooks", receiver.uri()),
        &["contact.created"],
    )
    .await;
    contact(&app, 1).await;
    let first = wait_requests(&receiver, 1).await;
    let body = verify_independently(&secret, &first[0]);
    assert_eq!(body["type"], "contact.created");
    assert_eq!(body["organization_id"], app.org.to_string());
    assert!(body["position"].as_i64().unwrap() > 0);
    assert_eq!(body["data"]["name"], "Driver 1");
    let clock = app.app.state().clock.clone();
    // 5 s after the first failure, not before.
    assert_eq!(count_after(&receiver, Duration::from_millis(700)).await, 1);
    // (Real time passes too: 3 s on the clock and about 1.4 s of waiting stay under 5 s.)
    clock.advance(Duration::from_millis(3_000));
    assert_eq!(
        count_after(&receiver, Duration::from_millis(700)).await,
        1,
        "retried early"
    );
    // Then 30 s, 2 min, 10 min, 30 min, 1 h (each up to 10% later).
    for (n, wait_ms) in [
        (2, 2_600),
        (3, 33_500),
        (4, 132_500),
        (5, 660_500),
        (6, 1_980_500),
        (7, 3_960_500),
    ] {
        clock.advance(Duration::from_millis(wait_ms));
        let got = wait_requests(&receiver, n).await;
        let again = verify_independently(&secret, &got[n - 1]);
        assert_eq!(
            again["id"], body["id"],
            "every attempt carries the same webhook-id"
        );
    }
    clock.advance(Duration::from_secs(86_400));
    assert_eq!(
        count_after(&receiver, Duration::from_millis(700)).await,
        7,
        "7 attempts, no more"
    );
    app.processes_done().await;
    app.settle().await;
    let dead = get(&app, "/api/v1/webhook-dead-letters").await;
    let delivery = &dead["data"][0];
    assert_eq!(delivery["status"], "dead_letter", "{dead}");
    assert_eq!(delivery["attempts"], 7);
    assert_eq!(delivery["last_status_code"], 500);
    let delivery_id = delivery["id"].as_str().unwrap();
    let detail = get(
        &app,
        &format!("/api/v1/webhook-endpoints/{id}/deliveries/{delivery_id}"),
    )
    .await;
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 7);
    assert_eq!(attempts[0]["status_code"], 500);
    assert_eq!(attempts[0]["response"], "down for maintenance");
    assert!(attempts[0]["latency_ms"].as_i64().is_some());
    // One dead letter in a row is this test's limit: disabled, the owner emailed.
    let endpoint = get(&app, &format!("/api/v1/webhook-endpoints/{id}")).await;
    assert_eq!(endpoint["enabled"], false, "{endpoint}");
    assert!(endpoint["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("dead-lettered"));
    let emails = emails_to(&app.app, "owner@acme.test").await;
    assert!(
        emails.iter().any(|e| e["subject"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Webhook endpoint disabled")),
        "{emails:?}"
    );
    // Fixed and re-enabled: the dead letter retried is delivered.
    receiver.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let (status, body) = app
        .patch_json(
            &format!("/api/v1/webhook-endpoints/{id}"),
            json!({ "enabled": true }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post_json(
            &format!("/api/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let got = wait_requests(&receiver, 1).await;
    assert_eq!(
        verify_independently(&secret, &got[0])["id"],
        body_id(&got[0])
    );
    app.processes_done().await;
    app.settle().await;
    let detail = get(
        &app,
        &format!("/api/v1/webhook-endpoints/{id}/deliveries/{delivery_id}"),
    )
    .await;
    assert_eq!(detail["data"]["status"], "delivered", "{detail}");
    let (status, _) = app
        .post_json(
            &format!("/api/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "a delivered delivery has nothing to retry");
    app.assert_timers_match_streams().await;
}

fn body_id(request: &wiremock::Request) -> Value {
    serde_json::from_slice::<Value>(&request.body).unwrap()["id"].clone()
}

async fn gone_disables_and_retry_after_is_honoured(backend: &str) {
    let app = spawn(backend, 5).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "120"))
        .up_to_n_times(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(410))
        .mount(&receiver)
        .await;
    let (id, _) = endpoint(&app, &receiver.uri(), &["contact.created"]).await;
    contact(&app, 1).await;
    wait_requests(&receiver, 1).await;
    let clock = app.app.state().clock.clone();
    // The schedule says 5 s; the receiver asked for 2 minutes.
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        count_after(&receiver, Duration::from_millis(700)).await,
        1,
        "Retry-After ignored"
    );
    clock.advance(Duration::from_secs(61));
    wait_requests(&receiver, 2).await;
    app.processes_done().await;
    let endpoint = get(&app, &format!("/api/v1/webhook-endpoints/{id}")).await;
    assert_eq!(endpoint["enabled"], false, "{endpoint}");
    assert!(endpoint["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("410"));
    // A disabled endpoint is sent nothing more.
    contact(&app, 2).await;
    app.processes_done().await;
    assert_eq!(count_after(&receiver, Duration::from_millis(300)).await, 2);
}

async fn one_endpoint_hears_its_events_in_log_order_and_a_replay_resends_exactly_those(
    backend: &str,
) {
    let app = spawn(backend, 5).await;
    let receiver = MockServer::start().await;
    let other = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&other)
        .await;
    let (id, secret) = endpoint(
        &app,
        &receiver.uri(),
        &["contact.created", "contact.updated"],
    )
    .await;
    endpoint(&app, &other.uri(), &["contact.updated"]).await;
    let from = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(contact(&app, n).await);
    }
    let (status, _) = app
        .patch_json(
            &format!("/api/v1/contacts/{}", ids[3]),
            json!({ "name": "Renamed" }),
        )
        .await;
    assert_eq!(status, 200);
    let got = wait_requests(&receiver, 13).await;
    app.processes_done().await;
    let bodies: Vec<Value> = got
        .iter()
        .map(|r| verify_independently(&secret, r))
        .collect();
    let positions: Vec<i64> = bodies
        .iter()
        .map(|b| b["position"].as_i64().unwrap())
        .collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(
        positions, sorted,
        "one endpoint hears its events in log order"
    );
    assert_eq!(
        bodies
            .iter()
            .filter(|b| b["type"] == "contact.created")
            .count(),
        12
    );
    assert_eq!(
        wait_requests(&other, 1).await.len(),
        1,
        "the other endpoint hears only updates"
    );
    // Replay the creations of the range: exactly those twelve, with their ids.
    let to = chrono::Utc::now() + chrono::Duration::seconds(1);
    let (status, body) = app
        .post_json(
            &format!("/api/v1/webhook-endpoints/{id}/replay"),
            json!({ "from": from, "to": to, "event_types": ["contact.created"] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"], 12);
    let got = wait_requests(&receiver, 25).await;
    app.processes_done().await;
    assert_eq!(count_after(&receiver, Duration::from_millis(300)).await, 25);
    let replayed: Vec<Value> = got[13..]
        .iter()
        .map(|r| verify_independently(&secret, r))
        .collect();
    let original: Vec<&Value> = bodies
        .iter()
        .filter(|b| b["type"] == "contact.created")
        .map(|b| &b["id"])
        .collect();
    let again: Vec<&Value> = replayed.iter().map(|b| &b["id"]).collect();
    assert_eq!(again, original, "the same events, in the same order");
    app.settle().await;
    let listed = get(
        &app,
        &format!("/api/v1/webhook-endpoints/{id}/deliveries?limit=100"),
    )
    .await;
    let delivered = listed["data"].as_array().unwrap();
    assert_eq!(delivered.len(), 25);
    assert!(delivered.iter().all(|d| d["status"] == "delivered"));
    assert_eq!(
        delivered
            .iter()
            .filter(|d| d["replay_id"] == body["replay_id"])
            .count(),
        12
    );
    app.processes_done().await;
    app.assert_timers_match_streams().await;
}

/// The starter reads an organization's subscriptions once per batch: an event still goes to
/// exactly the endpoints subscribed when it happened, with endpoints created, retyped,
/// disabled and enabled between the events. The live starts (however the log was batched),
/// the whole log replayed as one batch, and the log replayed event by event all agree.
async fn each_event_goes_to_the_endpoints_subscribed_when_it_happened(backend: &str) {
    use callflex::processes::webhooks::Webhooks;
    use callflex::processes::ProcessDefinition;

    let app = spawn(backend, 0).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let url = format!("{}/hook", receiver.uri());
    let patch = |id: &str, body: Value| {
        let app = &app;
        let path = format!("/api/v1/webhook-endpoints/{id}");
        async move {
            let (status, answer) = app.patch_json(&path, body).await;
            assert_eq!(status, 200, "{answer}");
        }
    };
    contact(&app, 1).await;
    let (a, _) = endpoint(&app, &url, &["contact.created"]).await;
    contact(&app, 2).await;
    let (b, _) = endpoint(&app, &url, &["contact.created", "contact.updated"]).await;
    contact(&app, 3).await;
    patch(&a, json!({ "event_types": ["contact.updated"] })).await;
    contact(&app, 4).await;
    patch(&b, json!({ "enabled": false })).await;
    contact(&app, 5).await;
    patch(&b, json!({ "enabled": true })).await;
    contact(&app, 6).await;
    app.processes_done().await;

    // Contacts 2..6 went to: A; A and B; B; nobody; B.
    let expected = [vec![&a], vec![&a, &b], vec![&b], vec![], vec![&b]];
    let mut live = app
        .strings(&format!(
            "SELECT subject FROM process_work WHERE kind = '{}' ORDER BY seq, subject",
            callflex::processes::webhooks::KIND
        ))
        .await;
    assert_eq!(live.len(), 5, "{live:?}");

    let state = app.app.state();
    let log = projections::runner::read_decoded(&state.store, eventlog::Checkpoint::START, 10_000)
        .await
        .unwrap();
    let starter = Webhooks::new(state);
    let replay = |batched: bool| {
        let state = state.clone();
        let log = &log;
        let starter = &starter;
        async move {
            let mut tx = state.store.write_pool().begin().await.unwrap();
            sqlx::query("DELETE FROM webhook_subscriptions")
                .execute(&mut *tx)
                .await
                .unwrap();
            let starts = if batched {
                starter.start_batch(&mut tx, log).await.unwrap()
            } else {
                let mut each = Vec::new();
                for (stored, event) in log {
                    each.push(starter.start(&mut tx, stored, event).await.unwrap());
                }
                each
            };
            tx.rollback().await.unwrap();
            starts
        }
    };
    let batched = replay(true).await;
    let one_by_one = replay(false).await;
    let subjects = |starts: &[Vec<callflex::processes::Start>]| -> Vec<String> {
        starts
            .iter()
            .flat_map(|s| s.iter().map(|s| s.subject.clone()))
            .collect()
    };
    assert_eq!(subjects(&batched), subjects(&one_by_one));
    let per_event: Vec<Vec<String>> = batched
        .iter()
        .filter(|starts| !starts.is_empty())
        .map(|starts| {
            let mut endpoints: Vec<String> = starts
                .iter()
                .map(|s| s.input["endpoint_id"].as_str().unwrap().to_string())
                .collect();
            endpoints.sort();
            endpoints
        })
        .collect();
    let wanted: Vec<Vec<String>> = expected
        .iter()
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut endpoints: Vec<String> = e.iter().map(|id| id.to_string()).collect();
            endpoints.sort();
            endpoints
        })
        .collect();
    assert_eq!(per_event, wanted);
    let mut replayed = subjects(&batched);
    replayed.sort();
    live.sort();
    assert_eq!(live, replayed, "the live starts are the replayed ones");
}

crate::both_backends!(
    endpoints_are_managed_with_published_event_types_only,
    each_event_goes_to_the_endpoints_subscribed_when_it_happened,
    a_failing_receiver_gets_the_schedule_then_a_dead_letter,
    gone_disables_and_retry_after_is_honoured,
    one_endpoint_hears_its_events_in_log_order_and_a_replay_resends_exactly_those,
);
