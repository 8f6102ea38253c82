//! Post-call processing and notifications, against local provider stubs, on both backends.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use aggregates::call::CallEvent;
use aggregates::process::{RetryPolicy, StepPlan};
use callflex::processes::starter::Starter;
use callflex::processes::worker::Worker;
use callflex::processes::{ProcessDefinition, Start, StepContext, StepResult};
use projections::DomainEvent;

use crate::helpers::*;
use crate::stubs::Stubs;

const OUR_NUMBER: &str = "+15559990000";
const SMS_TO: &str = "+15550001111";
const EMAIL_TO: &str = "dispatch@acme.test";

fn tool_call(id: &str, name: &str, args: Value) -> Value {
    json!({ "id": id, "type": "function", "function": { "name": name, "arguments": args } })
}

/// An end-of-call report; `analysis` as VAPI sends it (or `Null` for none).
fn end_report(call: &str, analysis: Value) -> String {
    vapi_message(
        "end-of-call-report",
        call,
        json!({
            "endedReason": "customer-ended-call",
            "startedAt": "2024-07-15T10:00:00Z",
            "endedAt": "2024-07-15T10:01:30Z",
            "artifact": {"transcript": "AI: CallFlex, how can I help?\nUser: This is Dana, I'd like to book a delivery for Friday."},
            "analysis": analysis,
        }),
    )
}

async fn spawn_with_stubs(backend: &str, stubs: &Stubs) -> TestApp {
    let app = spawn_app_with(backend, |c| stubs.configure(c)).await;
    set_notifications(&app, json!({})).await;
    app
}

/// SMS to SMS_TO and email to EMAIL_TO, plus `extra` settings; returns the answer.
async fn set_notifications(app: &TestApp, extra: Value) -> Value {
    let mut notifications = json!({
        "sms_enabled": true, "sms_numbers": [SMS_TO],
        "email_enabled": true, "email_addresses": [EMAIL_TO],
    });
    if let (Some(n), Some(e)) = (notifications.as_object_mut(), extra.as_object()) {
        n.extend(e.clone());
    }
    let (status, body) = app
        .patch_json(
            &format!("/api/v1/organizations/{}", app.org),
            json!({"settings": {"notifications": notifications}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The call as the API shows it, once processed (panics after 30 s).
async fn processed_call(app: &TestApp, call_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let res = app
            .client
            .get(format!("{}/api/v1/calls/{call_id}", app.base))
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            let body: Value = res.json().await.unwrap();
            if body["data"]["processed"] == true {
                return body["data"].clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "call {call_id} was not processed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET as the owner, as JSON.
async fn get_json(app: &TestApp, path: &str) -> Value {
    app.client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The call's notifications once none is still queued, sending or retrying.
async fn settled_notifications(app: &TestApp, call_id: &str, expected: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = get_json(app, &format!("/api/v1/calls/{call_id}/notifications")).await;
        let data = body["data"].as_array().cloned().unwrap_or_default();
        let done = data.len() == expected
            && data.iter().all(|n| {
                ["sent", "failed", "skipped"].contains(&n["status"].as_str().unwrap_or(""))
            });
        if done {
            return data;
        }
        assert!(
            Instant::now() < deadline,
            "notifications of {call_id} did not settle: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn call_id_of(app: &TestApp, vapi_id: &str) -> String {
    app.settle().await;
    let ids = app
        .strings(&format!(
            "SELECT id FROM calls WHERE vapi_call_id = '{vapi_id}'"
        ))
        .await;
    ids.first().cloned().expect("the call is projected")
}

/// Without VAPI's analysis the LLM is asked (summary and extraction); the call gets them,
/// the post-call summary goes out by SMS and email, and the call is marked processed.
async fn an_ended_call_is_summarized_notified_and_closed(backend: &str) {
    let stubs = Stubs::start(Duration::ZERO).await;
    let app = spawn_with_stubs(backend, &stubs).await;
    app.vapi_ok(&end_report("proc-1", Value::Null)).await;
    let id = call_id_of(&app, "proc-1").await;
    let call = processed_call(&app, &id).await;
    assert_eq!(
        call["summary"],
        "Dana called to book a delivery for Friday."
    );
    assert_eq!(call["call_type"], "booking");
    assert_eq!(call["sentiment"], "positive");
    assert_eq!(call["caller_name"], "Dana");
    assert_eq!(call["action_items"], json!(["Call Dana back"]));

    let llm = stubs.requests_to("/v1/chat/completions");
    assert_eq!(llm.len(), 2, "one summary, one extraction");
    for (_, headers, body) in &llm {
        assert_eq!(
            headers["authorization"],
            format!("Bearer {}", crate::stubs::LLM_KEY)
        );
        assert!(body.contains("book a delivery for Friday"), "{body}");
    }

    let sent = settled_notifications(&app, &id, 2).await;
    assert!(sent.iter().all(|n| n["status"] == "sent"), "{sent:?}");
    let emails = stubs.notification_emails();
    assert_eq!(emails.len(), 1);
    let (_, headers, body) = &emails[0];
    assert!(headers["idempotency-key"].starts_with("notification:"));
    let email: Value = serde_json::from_str(body).unwrap();
    assert_eq!(email["to"], json!([EMAIL_TO]));
    assert_eq!(email["subject"], "New call: booking");
    assert!(email["text"].as_str().unwrap().contains("Duration: 2min"));
    let sms = stubs.ledger.lock().unwrap().sms.clone();
    assert_eq!(sms.len(), 1);
    assert_eq!((sms[0].1.as_str(), sms[0].2.as_str()), (SMS_TO, OUR_NUMBER));
    assert!(sms[0].3.contains("Dana called to book"));
    let ids: Vec<_> = sent
        .iter()
        .map(|n| n["provider_message_id"].clone())
        .collect();
    assert!(ids.contains(&json!(sms[0].0)), "{ids:?}");

    // Exactly once, visible in the log and in /health.
    assert_eq!(app.count_events("CallAnalyzed").await, 1);
    assert_eq!(app.count_events("CallProcessed").await, 1);
    let health = app.operator_health().await;
    let processing = health["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "call_processing")
        .cloned()
        .unwrap();
    assert_eq!(processing["completed"], 1, "{health}");
    assert_eq!(processing["active"], true);
    app.processes_done().await;
    app.assert_timers_match_streams().await;
}

/// VAPI's own analysis is used as it is: no LLM request.
async fn vapi_analysis_is_used_without_asking_the_llm(backend: &str) {
    let stubs = Stubs::start(Duration::ZERO).await;
    let app = spawn_with_stubs(backend, &stubs).await;
    let analysis = json!({
        "summary": "Driver Sam called out sick for route 12.",
        "structuredData": {"callType": "support", "sentiment": "neutral", "callerName": "Sam",
                           "actionItems": ["Cover route 12"]},
    });
    app.vapi_ok(&end_report("proc-vapi", analysis)).await;
    let id = call_id_of(&app, "proc-vapi").await;
    let call = processed_call(&app, &id).await;
    assert_eq!(call["summary"], "Driver Sam called out sick for route 12.");
    assert_eq!(call["call_type"], "support");
    assert_eq!(call["caller_name"], "Sam");
    assert!(stubs.requests_to("/v1/chat/completions").is_empty());
}

/// An extraction that is not valid JSON is asked once more, then the step gives up (named in
/// the process's stream and /health); the notifications still go out, without inventing a
/// summary, and the call is closed.
async fn an_invalid_extraction_gives_up_and_the_rest_goes_on(backend: &str) {
    let stubs = Stubs::start(Duration::ZERO).await;
    stubs.ledger.lock().unwrap().extraction = Some("{not json".into());
    let app = spawn_with_stubs(backend, &stubs).await;
    app.vapi_ok(&end_report("proc-bad", Value::Null)).await;
    let id = call_id_of(&app, "proc-bad").await;
    let call = processed_call(&app, &id).await;
    assert_eq!(call.get("summary"), None, "nothing invented: {call}");
    let extraction_asks = stubs
        .requests_to("/v1/chat/completions")
        .iter()
        .filter(|(_, _, body)| body.contains("json_object"))
        .count();
    assert_eq!(extraction_asks, 2);
    assert_eq!(app.count_events("StepGaveUp").await, 1);
    let sent = settled_notifications(&app, &id, 2).await;
    assert!(sent.iter().all(|n| n["status"] == "sent"));
    let sms = stubs.ledger.lock().unwrap().sms.clone();
    assert!(sms[0].3.contains("No summary available"), "{sms:?}");
    let failed = app
        .scalar_i64("SELECT COUNT(*) FROM process_work WHERE kind = 'call_processing' AND status = 'failed'")
        .await;
    assert_eq!(failed, 1);
    // The API shows the step that gave up, with its reason, and the rest done.
    let processing = get_json(&app, &format!("/api/v1/calls/{id}/processing")).await;
    let data = &processing["data"];
    assert_eq!(data["status"], "failed", "{processing}");
    let step = |name: &str| {
        data["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == name))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(step("analysis")["status"], "gave_up");
    assert!(step("analysis")["last_error"]
        .as_str()
        .unwrap_or_default()
        .contains("invalid twice"));
    assert_eq!(step("notify")["status"], "succeeded");
    assert_eq!(step("close")["status"], "succeeded");
}

/// Provider failures are retried by the step's policy: a 500 from the LLM, a 503 from Twilio
/// (after which the lookup runs before the SMS is sent again), a 429 from Resend (with the same
/// idempotency key on every try).
async fn provider_failures_are_retried_without_sending_twice(backend: &str) {
    let stubs = Stubs::start(Duration::ZERO).await;
    let app = spawn_with_stubs(backend, &stubs).await;
    {
        let mut ledger = stubs.ledger.lock().unwrap();
        ledger.fail_first.insert("llm", vec![500]);
        ledger.fail_first.insert("twilio", vec![503]);
        ledger.fail_first.insert("resend", vec![429]);
    }
    app.vapi_ok(&end_report("proc-retry", Value::Null)).await;
    let id = call_id_of(&app, "proc-retry").await;
    let call = processed_call(&app, &id).await;
    assert_eq!(call["call_type"], "booking");
    let sent = settled_notifications(&app, &id, 2).await;
    assert!(sent.iter().all(|n| n["status"] == "sent"), "{sent:?}");
    let sms = sent.iter().find(|n| n["channel"] == "sms").unwrap();
    assert_eq!(sms["attempts"], 2, "{sms}");
    let ledger = stubs.ledger.lock().unwrap();
    assert_eq!(ledger.sms.len(), 1, "one SMS sent");
    let lookups = ledger
        .requests
        .iter()
        .filter(|(p, _, b)| p.ends_with("Messages.json") && b.is_empty())
        .count();
    assert_eq!(lookups, 1, "the retry looked first");
    drop(ledger);
    let keys: Vec<_> = stubs
        .notification_emails()
        .into_iter()
        .map(|(_, headers, _)| headers["idempotency-key"].clone())
        .collect();
    assert_eq!(keys.len(), 2, "the 429, then the send: {keys:?}");
    assert_eq!(keys[0], keys[1], "under one key");
}

/// A provider's long `Retry-After` (longer than a request waits out itself) moves the durable
/// retry to that time, however short the step's own back-off.
async fn a_long_retry_after_is_respected_by_the_durable_retry(backend: &str) {
    let stubs = Stubs::start(Duration::ZERO).await;
    let app = spawn_with_stubs(backend, &stubs).await;
    {
        let mut ledger = stubs.ledger.lock().unwrap();
        ledger.fail_first.insert("twilio", vec![429]);
        ledger.retry_after = Some(3);
    }
    app.vapi_ok(&vapi_message(
        "tool-calls",
        "proc-throttled",
        json!({"toolCallList": [tool_call("t1", "takeMessage",
            json!({"message": "pipe burst", "urgent": true}))]}),
    ))
    .await;
    let id = call_id_of(&app, "proc-throttled").await;
    let sent = settled_notifications(&app, &id, 1).await;
    assert_eq!(sent[0]["status"], "sent", "{sent:?}");
    let failed = app
        .strings("SELECT CAST(payload AS TEXT) FROM events WHERE event_type = 'StepFailed'")
        .await;
    let failure: Value = serde_json::from_str(&failed[0]).unwrap();
    let at = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(failure["StepFailed"][k].as_str().unwrap()).unwrap()
    };
    let waited = at("retry_at") - at("at");
    assert!(
        waited >= chrono::Duration::milliseconds(2_900),
        "retried after {waited} (the step's own back-off is 100 ms)"
    );
}

/// An urgent message is texted during the call, before it ends.
async fn an_urgent_message_is_texted_during_the_call(backend: &str) {
    let stubs = Stubs::start(Duration::ZERO).await;
    let app = spawn_with_stubs(backend, &stubs).await;
    app.vapi_ok(&vapi_message(
        "tool-calls",
        "proc-urgent",
        json!({"toolCallList": [tool_call("t1", "takeMessage",
            json!({"message": "pipe burst", "urgent": true, "callerName": "Lee"}))]}),
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while stubs.ledger.lock().unwrap().sms.is_empty() {
        assert!(Instant::now() < deadline, "no SMS during the call");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sms = stubs.ledger.lock().unwrap().sms.clone();
    assert_eq!(sms[0].1, SMS_TO);
    assert!(
        sms[0].3.contains("URGENT") && sms[0].3.contains("pipe burst"),
        "{sms:?}"
    );
    assert_eq!(
        app.count_events("CallEnded").await,
        0,
        "the call is still going"
    );
    let id = call_id_of(&app, "proc-urgent").await;
    let listed = settled_notifications(&app, &id, 1).await;
    assert_eq!(listed[0]["reason"], "function:takeMessage");
    // A viewer sees the recipient masked.
    let viewer = app.join_as("viewer@acme.test", "viewer").await;
    let body: Value = viewer
        .get(format!("{}/api/v1/notifications", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"][0]["recipient"], "+1555•••1111", "{body}");
}

/// The recording is copied into our storage; the API hands out a signed link to our copy,
/// which serves the same bytes without a bearer token, and nothing without a valid signature.
async fn the_recording_is_copied_and_served_by_a_signed_link(backend: &str) {
    let stubs = Stubs::start(Duration::ZERO).await;
    let app = spawn_with_stubs(backend, &stubs).await;
    let source = format!("{}/recordings/rec-1.wav", stubs.uri());
    app.vapi_ok(&vapi_message(
        "end-of-call-report",
        "proc-rec",
        json!({"endedReason": "customer-ended-call",
               "artifact": {"recordingUrl": source, "transcript": "AI: hi\nUser: bye"},
               "analysis": {"summary": "A short call."}}),
    ))
    .await;
    let id = call_id_of(&app, "proc-rec").await;
    processed_call(&app, &id).await;
    let body = get_json(&app, &format!("/api/v1/calls/{id}/recording")).await;
    let data = &body["data"];
    assert_eq!(data["stored"], true, "{body}");
    assert_eq!(data["source_url"], source);
    let url = data["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{PUBLIC_URL}/recordings/{id}?expires=")),
        "{url}"
    );
    let local = url.replacen(PUBLIC_URL, &app.base, 1);
    let res = reqwest::get(&local).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "audio/wav");
    assert_eq!(res.bytes().await.unwrap().as_ref(), crate::stubs::RECORDING);
    // A forged or borrowed signature opens nothing.
    let tampered = format!("{}0", local);
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 403);
    let other = local.replacen(&format!("/recordings/{id}"), "/recordings/another-call", 1);
    assert_eq!(reqwest::get(&other).await.unwrap().status(), 403);
    let unsigned = local.split('?').next().unwrap().to_string();
    assert_eq!(reqwest::get(&unsigned).await.unwrap().status(), 400);
}

/// In the organization's quiet hours the post-call summary waits (`deferred`, due at their
/// end); an urgent message during the call is still texted at once.
async fn quiet_hours_defer_the_summary_but_not_an_urgent_message(backend: &str) {
    let stubs = Stubs::start(Duration::ZERO).await;
    let app = spawn_with_stubs(backend, &stubs).await;
    let now = chrono::Utc::now();
    let hhmm = |t: chrono::DateTime<chrono::Utc>| t.format("%H:%M").to_string();
    let end = now + chrono::Duration::hours(2);
    let body = set_notifications(
        &app,
        json!({"quiet_hours": {"start": hhmm(now - chrono::Duration::hours(1)), "end": hhmm(end)}}),
    )
    .await;
    assert_eq!(
        body["data"]["settings"]["notifications"]["quiet_hours"]["end"],
        hhmm(end),
        "{body}"
    );
    app.vapi_ok(&vapi_message(
        "tool-calls",
        "proc-quiet",
        json!({"toolCallList": [tool_call("t1", "takeMessage",
            json!({"message": "pipe burst", "urgent": true}))]}),
    ))
    .await;
    app.vapi_ok(&end_report("proc-quiet", json!({"summary": "Quiet call."})))
        .await;
    let id = call_id_of(&app, "proc-quiet").await;
    processed_call(&app, &id).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = get_json(&app, &format!("/api/v1/calls/{id}/notifications")).await;
        let data = body["data"].as_array().cloned().unwrap_or_default();
        let status = |reason: &str| {
            data.iter()
                .filter(|n| n["reason"] == reason)
                .map(|n| n["status"].as_str().unwrap_or("").to_string())
                .collect::<Vec<_>>()
        };
        if status("function:takeMessage") == ["sent"]
            && status("post_call_summary") == ["deferred", "deferred"]
        {
            assert!(data[0]["last_error"]
                .as_str()
                .unwrap()
                .contains("quiet hours"));
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        stubs.ledger.lock().unwrap().sms.len(),
        1,
        "only the urgent text"
    );
    assert!(stubs.notification_emails().is_empty());
    let due = app
        .scalar_i64(
            "SELECT MIN(due_at) FROM process_work WHERE kind = 'notification' AND status = 'retrying'",
        )
        .await;
    let minutes_away = (due - now.timestamp_millis()) / 60_000;
    assert!(
        (100..=121).contains(&minutes_away),
        "due in {minutes_away} min"
    );
    // Filtered by status in the organization-wide list.
    let deferred = get_json(&app, "/api/v1/notifications?status=deferred").await;
    assert_eq!(
        deferred["data"].as_array().map(Vec::len),
        Some(2),
        "{deferred}"
    );
}

/// A test process whose one step postpones itself once, briefly, then succeeds.
struct WaitsOnce;

#[async_trait::async_trait]
impl ProcessDefinition for WaitsOnce {
    fn kind(&self) -> &'static str {
        "test_waits_once"
    }

    fn consumer(&self) -> &'static str {
        "process:test_waits_once"
    }

    fn wants(&self, event: &DomainEvent) -> bool {
        matches!(event, DomainEvent::Call(CallEvent::CallEnded { .. }))
    }

    fn starts(&self, stored: &eventlog::StoredEvent, event: &DomainEvent) -> Vec<Start> {
        if !self.wants(event) {
            return Vec::new();
        }
        vec![Start::new(stored.aggregate_id.clone(), None, json!({}))]
    }

    fn plan(&self, _input: &Value, first_backoff_ms: i64) -> Vec<StepPlan> {
        vec![StepPlan::new(
            "send",
            RetryPolicy {
                first_backoff_ms,
                ..RetryPolicy::default()
            },
        )]
    }

    async fn postpone(&self, ctx: &StepContext<'_>) -> Option<StepResult> {
        ctx.step.retry_at.is_none().then(|| StepResult::Postponed {
            until: ctx.now + chrono::Duration::milliseconds(300),
            reason: "not yet".into(),
        })
    }

    async fn run(&self, _ctx: StepContext<'_>) -> StepResult {
        StepResult::Succeeded(json!({"ran": true}))
    }
}

/// The runtime: a postponed step is due again at its time, then runs and its outcome is
/// recorded as its first attempt (a postponement is not an outcome, whatever the keys).
async fn a_postponed_step_runs_at_its_time_and_its_outcome_is_recorded(backend: &str) {
    let app = spawn_quiet_app(backend).await;
    let state = app.app.state().clone();
    let definition: std::sync::Arc<dyn ProcessDefinition> = std::sync::Arc::new(WaitsOnce);
    let starter = Starter::new(definition.clone());
    let mark = starter.mark();
    let starter =
        projections::ProjectorRunner::new(state.store.clone(), std::sync::Arc::new(starter));
    let (starter, _task) = starter.spawn(std::future::pending());
    let _worker =
        Worker::new(definition, state.clone(), starter, mark).spawn(std::future::pending());
    app.vapi_ok(&end_report("proc-wait", json!({"summary": "x"})))
        .await;
    let id = call_id_of(&app, "proc-wait").await;
    let stream = format!("test_waits_once:{id}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let types = loop {
        let types = app
            .strings(&format!(
                "SELECT event_type FROM events WHERE aggregate_id = '{stream}' ORDER BY sequence"
            ))
            .await;
        if types.last().map(String::as_str) == Some("ProcessCompleted") {
            break types;
        }
        assert!(Instant::now() < deadline, "not completed: {types:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        types,
        [
            "ProcessStarted",
            "StepPostponed",
            "StepSucceeded",
            "ProcessCompleted"
        ]
    );
}

/// A lane left with queued instances and none pending (a starter queued one behind a
/// pending instance a worker finished at that moment) is repaired by the sweep: its first
/// queued instance, in log order, becomes due; a lane with one pending is left alone.
async fn a_stalled_lane_is_promoted_in_log_order(backend: &str) {
    let app = spawn_quiet_app(backend).await;
    let state = app.app.state().clone();
    let row = |subject: &str, lane: &str, status: &str, seq: i64| {
        format!(
            "INSERT INTO process_work (kind, subject, status, due_at, created_at, updated_at, \
             lane, seq, input) VALUES ('test_lane', '{subject}', '{status}', NULL, 1, 1, \
             '{lane}', {seq}, '{{}}')"
        )
    };
    for sql in [
        row("a-done", "a", "completed", 1),
        row("a-late", "a", "queued", 3),
        row("a-next", "a", "queued", 2),
        row("b-first", "b", "pending", 1),
        row("b-next", "b", "queued", 2),
    ] {
        sqlx::query(&sql).execute(state.store.pool()).await.unwrap();
    }
    let only_b = ["b".to_string()];
    let promoted =
        callflex::processes::work::promote_lanes(&state.store, "test_lane", Some(&only_b))
            .await
            .unwrap();
    assert_eq!(promoted, 0, "b has one pending");
    let promoted = callflex::processes::work::promote_lanes(&state.store, "test_lane", None)
        .await
        .unwrap();
    assert_eq!(promoted, 1);
    let statuses = app
        .strings("SELECT subject || '=' || status FROM process_work WHERE kind = 'test_lane' ORDER BY subject")
        .await;
    assert_eq!(
        statuses,
        [
            "a-done=completed",
            "a-late=queued",
            "a-next=pending",
            "b-first=pending",
            "b-next=queued"
        ]
    );
    let due = app
        .scalar_i64(
            "SELECT COUNT(*) FROM process_work WHERE subject = 'a-next' AND due_at IS NOT NULL",
        )
        .await;
    assert_eq!(due, 1, "the promoted instance is due");
    assert_eq!(
        callflex::processes::work::promote_lanes(&state.store, "test_lane", None)
            .await
            .unwrap(),
        0,
        "nothing more to repair"
    );
    // The lane's worker runs them in log order, pending or queued; none has run yet.
    let next = |lane: &'static str, limit| {
        let pool = state.store.pool().clone();
        async move {
            callflex::processes::work::lane_next(&pool, "test_lane", lane, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|due| (due.subject, due.fresh))
                .collect::<Vec<_>>()
        }
    };
    let fresh = |s: &str| (s.to_string(), true);
    assert_eq!(next("a", 10).await, [fresh("a-next"), fresh("a-late")]);
    assert_eq!(next("b", 1).await, [fresh("b-first")]);
    assert_eq!(next("b", 5).await, [fresh("b-first"), fresh("b-next")]);
}

/// Under a burst of requests the processes take turns at their share of the time: slowed,
/// never stopped; the operator's `/health` says so.
async fn a_busy_request_path_slows_the_processes_but_never_stops_them(backend: &str) {
    let stubs = Stubs::start(Duration::ZERO).await;
    let app = spawn_with_stubs(backend, &stubs).await;
    let foreground = &app.app.state().foreground;
    // Requests held in flight for the whole test: far above the busy mark (4 by default).
    let held: Vec<_> = (0..16).map(|_| foreground.enter()).collect();
    tokio::time::sleep(callflex::foreground::WINDOW * 2).await;
    assert!(foreground.busy());
    app.vapi_ok(&end_report(
        "busy-1",
        json!({
            "summary": "Dana booked a delivery for Friday.",
            "structuredData": {"callType": "booking", "sentiment": "positive",
                               "callerName": "Dana", "actionItems": []},
        }),
    ))
    .await;
    let id = call_id_of(&app, "busy-1").await;
    let call = processed_call(&app, &id).await;
    assert_eq!(call["summary"], "Dana booked a delivery for Friday.");
    settled_notifications(&app, &id, 2).await;
    assert!(foreground.yielded() > 0, "no process run took its turn");
    let health = app.operator_health().await;
    assert_eq!(
        health["foreground"]["background_yielding"], true,
        "{health}"
    );
    assert!(health["foreground"]["requests_in_flight"].as_f64().unwrap() >= 16.0);
    drop(held);
    tokio::time::sleep(callflex::foreground::WINDOW * 2).await;
    assert!(!foreground.busy());
}

crate::both_backends!(
    a_busy_request_path_slows_the_processes_but_never_stops_them,
    a_stalled_lane_is_promoted_in_log_order,
    a_long_retry_after_is_respected_by_the_durable_retry,
    a_postponed_step_runs_at_its_time_and_its_outcome_is_recorded,
    quiet_hours_defer_the_summary_but_not_an_urgent_message,
    the_recording_is_copied_and_served_by_a_signed_link,
    an_ended_call_is_summarized_notified_and_closed,
    vapi_analysis_is_used_without_asking_the_llm,
    an_invalid_extraction_gives_up_and_the_rest_goes_on,
    provider_failures_are_retried_without_sending_twice,
    an_urgent_message_is_texted_during_the_call,
);
