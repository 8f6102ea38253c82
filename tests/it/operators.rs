//! Operators: `/health` on the service's port says only whether it lives; the operator port
//! has the detail and Prometheus `/metrics` with requests, deliveries, appends, lag, process
//! steps and live-feed clients.

use serde_json::{json, Value};

use crate::helpers::*;

/// The value of the first sample of `name` whose labels contain every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn health_is_plain_for_anyone_and_detailed_with_metrics_on_the_operator_port(backend: &str) {
    let app = spawn_app(backend).await;
    app.vapi_ok(&vapi_message(
        "status-update",
        "scraped",
        json!({"status": "in-progress"}),
    ))
    .await;
    let res = reqwest::Client::new()
        .post(format!("{}/api/webhooks/vapi/{}", app.base, app.org))
        .json(&json!({"message": {"type": "status-update"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "unsigned");

    let plain: Value = reqwest::get(format!("{}/health", app.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plain, json!({"status": "ok"}), "nothing more for anyone");
    let res = reqwest::get(format!("{}/metrics", app.base)).await.unwrap();
    assert_eq!(res.status(), 404, "metrics are not on the public port");

    let detail: Value = reqwest::get(format!("{}/health", app.ops))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["backend"], backend);
    assert!(
        detail["projectors"].as_array().unwrap().len() >= 5,
        "{detail}"
    );
    assert!(detail["log_head"].as_i64().unwrap() > 0);

    // Every projector caught up, then scraped: lag 0, and the counters of what happened.
    app.settle().await;
    let res = reqwest::get(format!("{}/metrics", app.ops)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = res.text().await.unwrap();
    let has = |name: &str, labels: &[&str]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} in:\n{text}"))
    };
    assert!(
        has(
            "webhook_deliveries_total",
            &["provider=\"vapi\"", "outcome=\"recorded\""]
        ) >= 1.0
    );
    assert!(
        has(
            "webhook_deliveries_total",
            &["provider=\"vapi\"", "outcome=\"rejected\""]
        ) >= 1.0
    );
    assert!(
        has(
            "http_requests_total",
            &[
                "route=\"/api/webhooks/vapi/:id\"",
                "status=\"200\"",
                "method=\"POST\""
            ]
        ) >= 1.0
    );
    assert!(
        has(
            "http_request_duration_seconds_bucket",
            &["route=\"/api/webhooks/vapi/:id\"", "le=\"+Inf\""]
        ) >= 1.0
    );
    assert!(has("eventlog_append_seconds_count", &["outcome=\"committed\""]) >= 1.0);
    assert_eq!(has("projector_lag_events", &["projector=\"calls\""]), 0.0);
    assert_eq!(has("projector_lag_seconds", &["projector=\"calls\""]), 0.0);
    assert!(sample(
        &text,
        "process_lag_events",
        &["process=\"call_processing\""]
    )
    .is_some());
    assert!(sample(&text, "sse_clients", &[]).is_some());
    assert!(text.contains("# HELP http_requests_total"));
    assert!(
        !text.contains("7d9f") && !text.contains(&app.org.to_string()),
        "no ids in labels"
    );
}

/// One correlation id from a request's `traceparent` to its events; from a delivery to the
/// work after it (the process's events share the delivery's correlation id).
async fn a_traceparent_and_a_deliverys_correlation_follow_the_work(backend: &str) {
    let app = spawn_app(backend).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = app
        .client
        .post(format!("{}/api/v1/contacts", app.base))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&json!({"phone_number": "+15550007777", "name": "Traced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let answered = res.headers()["traceparent"].to_str().unwrap().to_string();
    assert!(answered.starts_with(&format!("00-{trace}-")), "{answered}");
    let correlation = uuid::Uuid::parse_str(trace).unwrap().to_string();
    assert_eq!(
        app.strings("SELECT correlation_id FROM events WHERE event_type = 'ContactCreated'")
            .await,
        vec![correlation]
    );
    // Without one, a request still gets one id for all its events, and says which.
    let res = app
        .client
        .post(format!("{}/api/v1/contacts", app.base))
        .json(&json!({"phone_number": "+15550008888"}))
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("traceparent"));

    app.vapi_ok(&vapi_message(
        "end-of-call-report",
        "traced",
        json!({"endedReason": "customer-ended-call", "startedAt": "2024-07-15T10:00:00Z",
               "endedAt": "2024-07-15T10:01:00Z", "analysis": {"summary": "A short call."}}),
    ))
    .await;
    app.processes_done().await;
    let ended = app
        .strings("SELECT correlation_id FROM events WHERE event_type = 'CallEnded'")
        .await;
    let processing = app
        .strings(
            "SELECT DISTINCT correlation_id FROM events WHERE aggregate_type = 'process' \
             AND aggregate_id LIKE 'call_processing%'",
        )
        .await;
    assert_eq!(
        processing, ended,
        "the process's events carry the delivery's correlation"
    );
    let processed = app
        .strings("SELECT correlation_id FROM events WHERE event_type = 'CallProcessed'")
        .await;
    assert_eq!(processed, ended, "and so do the commands its steps issue");
}

crate::both_backends!(
    health_is_plain_for_anyone_and_detailed_with_metrics_on_the_operator_port,
    a_traceparent_and_a_deliverys_correlation_follow_the_work
);
