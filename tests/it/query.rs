//! The `/api/v1` query API over real HTTP, on both backends. Data is produced the way
//! production produces it: VAPI and Stripe webhook deliveries (and, for the post-call analysis
//! that has no webhook, the `Analyze` command the post-call processor issues).

use std::collections::HashSet;

use aggregates::call::{CallAnalysis, CallCommand, CallContext, Direction};
use aggregates::organization::OrganizationCommand;
use eventlog::CommandMeta;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

/// One call to deliver as VAPI would.
#[derive(Clone)]
struct CallSpec {
    vapi_id: &'static str,
    kind: &'static str,
    caller: Option<&'static str>,
    started: &'static str,
    /// `None`: the call is still in progress.
    ended: Option<(&'static str, f64, &'static str, f64)>,
    recording: bool,
    tools: Vec<(&'static str, Value)>,
    lines: Vec<&'static str>,
    phone_number_id: &'static str,
    assistant_id: &'static str,
}

fn message(spec: &CallSpec, kind: &str, extra: Value) -> String {
    let mut call = json!({
        "id": spec.vapi_id,
        "type": spec.kind,
        "phoneNumberId": spec.phone_number_id,
        "assistantId": spec.assistant_id,
        "startedAt": spec.started,
        "phoneCallProviderId": format!("CA{}", spec.vapi_id),
    });
    if let Some(caller) = spec.caller {
        call["customer"] = json!({ "number": caller });
    }
    let mut m = json!({
        "type": kind,
        "timestamp": 1_721_000_000_000i64,
        "call": call,
        "phoneNumber": { "number": "+15559990000" },
    });
    if let (Some(obj), Some(e)) = (m.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            obj.insert(k.clone(), v.clone());
        }
    }
    json!({ "message": m }).to_string()
}

/// Delivers the call's webhooks; returns the last log position written.
async fn deliver(app: &TestApp, spec: &CallSpec) -> i64 {
    let mut last = 0;
    let post = |body: String| async move { app.vapi_ok(&body).await };
    let answer = post(message(
        spec,
        "status-update",
        json!({"status": "in-progress"}),
    ))
    .await;
    last = last.max(answer["position"].as_i64().unwrap_or(0));
    for (i, line) in spec.lines.iter().enumerate() {
        let role = if i % 2 == 0 { "assistant" } else { "user" };
        post(message(
            spec,
            "transcript",
            json!({"role": role, "transcriptType": "final", "transcript": line,
                   "timestamp": 1_721_000_001_000i64 + i as i64}),
        ))
        .await;
    }
    for (i, (name, args)) in spec.tools.iter().enumerate() {
        post(message(
            spec,
            "tool-calls",
            json!({"toolCallList": [{"id": format!("tc-{}-{i}", spec.vapi_id), "type": "function",
                   "function": {"name": name, "arguments": args}}]}),
        ))
        .await;
    }
    if let Some((ended_at, seconds, reason, cost)) = spec.ended {
        let mut artifact = json!({
            "transcript": format!("AI: Thanks for calling CallFlex\nUser: {}", spec.lines.join("\n")),
            "messages": [],
        });
        if spec.recording {
            artifact["recordingUrl"] = json!(format!("https://rec.test/{}.wav", spec.vapi_id));
            artifact["stereoRecordingUrl"] =
                json!(format!("https://rec.test/{}-stereo.wav", spec.vapi_id));
        }
        let answer = post(message(
            spec,
            "end-of-call-report",
            json!({"endedReason": reason, "startedAt": spec.started, "endedAt": ended_at,
                   "durationSeconds": seconds, "cost": cost, "artifact": artifact,
                   "analysis": {"summary": format!("Summary of {}", spec.vapi_id)}}),
        ))
        .await;
        last = last.max(answer["position"].as_i64().unwrap_or(0));
    }
    last
}

/// The post-call processor's analysis (no webhook carries it).
async fn analyze(app: &TestApp, spec: &CallSpec, call_type: &str, sentiment: &str) {
    let id = callflex::webhooks::vapi::call_id(app.org, spec.vapi_id);
    let ctx = CallContext {
        organization_id: app.org,
        vapi_call_id: spec.vapi_id.to_string(),
        from_number: spec.caller.map(str::to_string),
        to_number: Some("+15559990000".into()),
        direction: Direction::Inbound,
        phone_number_id: Some(spec.phone_number_id.into()),
        assistant_id: Some(spec.assistant_id.into()),
        provider_call_id: None,
        started_at: None,
    };
    app.app
        .state()
        .calls
        .execute(
            &id,
            CallCommand::Analyze {
                ctx,
                analysis: CallAnalysis {
                    summary: format!("Analyzed {}", spec.vapi_id),
                    call_type: Some(call_type.into()),
                    sentiment: Some(sentiment.into()),
                    caller_name: None,
                    action_items: vec!["call back".into()],
                    urgency: None,
                    source: None,
                    at: chrono::Utc::now(),
                },
            },
            &CommandMeta::new("system:post-call").tenant(app.org),
        )
        .await
        .expect("analysis recorded");
}

fn spec_a() -> CallSpec {
    CallSpec {
        vapi_id: "q-a",
        kind: "inboundPhoneCall",
        caller: Some("+15550000001"),
        started: "2024-07-10T15:00:00Z",
        ended: Some(("2024-07-10T15:02:30Z", 150.0, "customer-ended-call", 0.5)),
        recording: true,
        tools: vec![(
            "logDriverCallout",
            json!({"driverName": "Sam", "reason": "truck broke down", "expectedReturn": "Monday"}),
        )],
        lines: vec![
            "Hi this is Sam, my truck broke down near Denver",
            "Sorry to hear that",
        ],
        phone_number_id: "pn-1",
        assistant_id: "as-1",
    }
}

fn spec_b() -> CallSpec {
    CallSpec {
        vapi_id: "q-b",
        kind: "inboundPhoneCall",
        caller: Some("+15550000002"),
        started: "2024-07-11T03:30:00Z",
        ended: Some(("2024-07-11T03:30:30Z", 30.0, "assistant-ended-call", 0.1)),
        recording: false,
        tools: vec![(
            "transferCall",
            json!({"destination": "dispatch", "reason": "load"}),
        )],
        lines: vec!["I need to talk to dispatch about a load"],
        phone_number_id: "pn-2",
        assistant_id: "as-1",
    }
}

fn spec_c() -> CallSpec {
    CallSpec {
        vapi_id: "q-c",
        kind: "inboundPhoneCall",
        caller: Some("+15550000001"),
        started: "2024-07-12T12:00:00Z",
        ended: Some(("2024-07-12T12:06:40Z", 400.0, "customer-ended-call", 1.0)),
        recording: true,
        tools: vec![],
        lines: vec!["Calling about the invoice payment"],
        phone_number_id: "pn-1",
        assistant_id: "as-2",
    }
}

fn spec_d() -> CallSpec {
    CallSpec {
        vapi_id: "q-d",
        kind: "webCall",
        caller: None,
        started: "2024-07-12T13:00:00Z",
        ended: None,
        recording: false,
        tools: vec![],
        lines: vec![],
        phone_number_id: "pn-3",
        assistant_id: "as-2",
    }
}

/// Four calls (D newest, then C, B, A), analysis for A and C, projected.
async fn seeded(backend: &str) -> TestApp {
    let app = spawn_quiet_app(backend).await;
    for spec in [spec_a(), spec_b(), spec_c(), spec_d()] {
        deliver(&app, &spec).await;
    }
    app.settle().await;
    analyze(&app, &spec_a(), "driver_callout", "negative").await;
    analyze(&app, &spec_c(), "billing", "neutral").await;
    app.settle().await;
    app
}

async fn get_as(app: &TestApp, org: Option<&str>, path: &str) -> (u16, Value) {
    let mut req = app.client.get(format!("{}{path}", app.base));
    if let Some(org) = org {
        req = req.header("X-Organization-Id", org);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// GET as the test organization, expecting 200.
async fn get_ok(app: &TestApp, path: &str) -> Value {
    let (status, body) = get_as(app, Some(&app.org.to_string()), path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The VAPI ids of a page of calls, in order.
fn vapi_ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["vapi_call_id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn listed(app: &TestApp, query: &str) -> Vec<String> {
    vapi_ids(&get_ok(app, &format!("/api/v1/calls{query}")).await)
}

fn call_id(app: &TestApp, vapi_id: &str) -> String {
    callflex::webhooks::vapi::call_id(app.org, vapi_id)
}

async fn calls_are_listed_newest_first_and_every_filter_narrows_the_list(backend: &str) {
    let app = seeded(backend).await;
    assert_eq!(listed(&app, "").await, ["q-d", "q-c", "q-b", "q-a"]);
    let cases: &[(&str, &[&str])] = &[
        ("?from=2024-07-11T00:00:00Z", &["q-d", "q-c", "q-b"]),
        ("?to=2024-07-11T00:00:00Z", &["q-a"]),
        ("?from=1720656000000&to=2024-07-12", &["q-b"]),
        ("?status=ended", &["q-c", "q-b", "q-a"]),
        ("?status=in-progress", &["q-d"]),
        ("?direction=web", &["q-d"]),
        ("?direction=inbound", &["q-c", "q-b", "q-a"]),
        ("?ended_reason=customer-ended-call", &["q-c", "q-a"]),
        ("?phone_number_id=pn-2", &["q-b"]),
        ("?assistant_id=as-2", &["q-d", "q-c"]),
        ("?caller=%2B15550000001", &["q-c", "q-a"]),
        ("?call_type=billing", &["q-c"]),
        ("?sentiment=negative", &["q-a"]),
        ("?min_duration=100", &["q-c", "q-a"]),
        ("?max_duration=100", &["q-b"]),
        ("?min_duration=100&max_duration=200", &["q-a"]),
        ("?has_recording=true", &["q-c", "q-a"]),
        ("?has_recording=false", &["q-d", "q-b"]),
        ("?action_type=transfer", &["q-b"]),
        ("?action_type=driver_callout", &["q-a"]),
        ("?action_type=message_taken", &[]),
        (
            "?status=ended&caller=%2B15550000001&has_recording=true&min_duration=200",
            &["q-c"],
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(&listed(&app, query).await, expected, "filter {query}");
    }
    let first = get_ok(&app, "/api/v1/calls?limit=3").await;
    assert_eq!(vapi_ids(&first), ["q-d", "q-c", "q-b"]);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let second = get_ok(&app, &format!("/api/v1/calls?limit=3&cursor={cursor}")).await;
    assert_eq!(vapi_ids(&second), ["q-a"]);
    assert!(second["next_cursor"].is_null());
    assert!(second["position"].as_i64().unwrap_or(0) > 0);
    let a = &first["data"][2];
    assert_eq!(a["billable_minutes"], 1);
    app.app.stop().await;
}

async fn a_call_its_transcript_recording_and_actions_are_served(backend: &str) {
    let app = seeded(backend).await;
    let a = call_id(&app, "q-a");
    let call = get_ok(&app, &format!("/api/v1/calls/{a}")).await;
    let data = &call["data"];
    assert_eq!(data["id"], a.as_str());
    assert_eq!(data["status"], "ended");
    assert_eq!(data["duration_seconds"], 150.0);
    assert_eq!(data["billable_minutes"], 3);
    assert_eq!(data["ended_reason"], "customer-ended-call");
    assert_eq!(data["call_type"], "driver_callout");
    assert_eq!(data["sentiment"], "negative");
    assert_eq!(data["has_recording"], true);
    assert_eq!(data["action_types"], json!(["driver_callout"]));
    assert_eq!(data["started_at"], "2024-07-10T15:00:00+00:00");

    let transcript = get_ok(&app, &format!("/api/v1/calls/{a}/transcript")).await;
    let segments = transcript["data"]["segments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(segments.len(), 2);
    assert_eq!(
        segments[0]["text"],
        "Hi this is Sam, my truck broke down near Denver"
    );
    assert_eq!(segments[1]["role"], "user");
    assert!(transcript["data"]["full_text"]
        .as_str()
        .unwrap_or_default()
        .contains("Sorry to hear that"));
    assert!(transcript["data"]["final_text"]
        .as_str()
        .unwrap_or_default()
        .starts_with("AI: Thanks for calling CallFlex"));

    let recording = get_ok(&app, &format!("/api/v1/calls/{a}/recording")).await;
    assert_eq!(recording["data"]["url"], "https://rec.test/q-a.wav");
    assert_eq!(
        recording["data"]["stereo_url"],
        "https://rec.test/q-a-stereo.wav"
    );
    let b = call_id(&app, "q-b");
    let (status, body) = get_as(
        &app,
        Some(&app.org.to_string()),
        &format!("/api/v1/calls/{b}/recording"),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "recording_not_found");

    let actions = get_ok(&app, &format!("/api/v1/calls/{a}/actions")).await;
    let list = actions["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["action_type"], "driver_callout");
    assert_eq!(list[0]["name"], "logDriverCallout");
    assert_eq!(list[0]["arguments"]["driverName"], "Sam");
    let (status, body) = get_as(
        &app,
        Some(&app.org.to_string()),
        "/api/v1/calls/no-such-call",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "call_not_found");
    app.app.stop().await;
}

async fn stats_total_the_range_and_bucket_days_in_the_requested_time_zone(backend: &str) {
    let app = seeded(backend).await;
    let utc = get_ok(&app, "/api/v1/calls/stats?from=2024-07-10&to=2024-07-13").await;
    let s = &utc["data"];
    assert_eq!(s["total_calls"], 4);
    assert_eq!(s["ended_calls"], 3);
    assert_eq!(s["total_duration_seconds"], 580.0);
    assert_eq!(s["billable_minutes"], 11);
    assert!((s["total_cost"].as_f64().unwrap_or(0.0) - 1.6).abs() < 1e-9);
    assert!((s["average_duration_seconds"].as_f64().unwrap_or(0.0) - 580.0 / 3.0).abs() < 1e-9);
    let calls_per_day = |s: &Value| -> Vec<(String, i64)> {
        s["series"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|d| {
                        (
                            d["date"].as_str().unwrap_or_default().to_string(),
                            d["calls"].as_i64().unwrap_or(-1),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        calls_per_day(s),
        [
            (String::from("2024-07-10"), 1),
            (String::from("2024-07-11"), 1),
            (String::from("2024-07-12"), 2)
        ]
    );
    let bucket = |s: &Value, dim: &str, key: Value| -> i64 {
        s[dim]
            .as_array()
            .and_then(|a| a.iter().find(|b| b["key"] == key))
            .and_then(|b| b["count"].as_i64())
            .unwrap_or(0)
    };
    assert_eq!(
        bucket(s, "by_ended_reason", json!("customer-ended-call")),
        2
    );
    assert_eq!(bucket(s, "by_ended_reason", Value::Null), 1);
    assert_eq!(bucket(s, "by_call_type", json!("billing")), 1);
    assert_eq!(bucket(s, "by_sentiment", json!("negative")), 1);
    assert_eq!(bucket(s, "by_action_type", json!("transfer")), 1);
    assert_eq!(bucket(s, "by_action_type", json!("driver_callout")), 1);
    assert_eq!(bucket(s, "by_direction", json!("web")), 1);
    assert_eq!(bucket(s, "by_status", json!("ended")), 3);

    // In Chicago, B (03:30Z on the 11th) is still the evening of the 10th.
    let chicago = get_ok(
        &app,
        "/api/v1/calls/stats?from=2024-07-10&to=2024-07-13&tz=America/Chicago",
    )
    .await;
    assert_eq!(chicago["data"]["tz"], "America/Chicago");
    assert_eq!(
        calls_per_day(&chicago["data"]),
        [
            (String::from("2024-07-10"), 2),
            (String::from("2024-07-11"), 0),
            (String::from("2024-07-12"), 2)
        ]
    );
    let day = &chicago["data"]["series"][0];
    assert_eq!(day["billable_minutes"], 4);
    app.app.stop().await;
}

async fn transcript_search_ranks_matches_highlights_them_and_survives_a_rebuild(backend: &str) {
    let app = seeded(backend).await;
    let search = |q: &'static str| {
        let app = &app;
        async move { get_ok(app, &format!("/api/v1/calls/search?{q}")).await }
    };
    let hits = search("q=truck").await;
    let data = hits["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(data.len(), 1, "{hits}");
    assert_eq!(data[0]["call_id"], call_id(&app, "q-a").as_str());
    assert!(
        data[0]["snippet"]
            .as_str()
            .unwrap_or_default()
            .contains("<mark>truck</mark>"),
        "{hits}"
    );
    assert_eq!(data[0]["from_number"], "+15550000001");
    // Stemming: "loads" finds "load"; every word must match.
    let hits = search("q=dispatch%20loads").await;
    assert_eq!(hits["data"][0]["call_id"], call_id(&app, "q-b").as_str());
    assert_eq!(search("q=dispatch%20zebra").await["data"], json!([]));
    // Ranked: the call mentioning "invoice" twice ranks above... there is only one; page
    // through the three transcripts that mention CallFlex instead.
    let first = search("q=callflex&limit=2").await;
    assert_eq!(first["data"].as_array().map(Vec::len), Some(2));
    let rank0 = first["data"][0]["rank"].as_f64().unwrap_or(0.0);
    let rank1 = first["data"][1]["rank"].as_f64().unwrap_or(0.0);
    assert!(rank0 >= rank1);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let second = get_ok(
        &app,
        &format!("/api/v1/calls/search?q=callflex&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(second["data"].as_array().map(Vec::len), Some(1));
    assert!(second["next_cursor"].is_null());
    // Operators in user input are taken literally.
    let (status, _) = get_as(
        &app,
        Some(&app.org.to_string()),
        "/api/v1/calls/search?q=%22truck%20OR%20NEAR(",
    )
    .await;
    assert_eq!(status, 200);

    // A blue/green rebuild of the transcripts projection keeps search working.
    let state = app.app.state();
    let handle = state
        .projectors
        .iter()
        .find(|h| h.name() == "transcripts")
        .expect("transcripts projector");
    projections::rebuild::rebuild(&state.store, handle)
        .await
        .expect("rebuild");
    let hits = search("q=invoice").await;
    assert_eq!(
        hits["data"][0]["call_id"],
        call_id(&app, "q-c").as_str(),
        "{hits}"
    );
    // And new transcripts are indexed into the swapped-in table.
    let mut e = spec_d();
    e.vapi_id = "q-e";
    e.lines = vec!["hello", "the refrigerated trailer is late"];
    deliver(&app, &e).await;
    app.settle().await;
    let hits = search("q=refrigerated").await;
    assert_eq!(
        hits["data"][0]["call_id"],
        call_id(&app, "q-e").as_str(),
        "{hits}"
    );
    app.app.stop().await;
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.base))
        .header("X-Organization-Id", app.org.to_string());
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let position = res
        .headers()
        .get("x-position")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        position,
    )
}

async fn contacts_come_from_callers_and_are_created_edited_and_deleted_by_commands(backend: &str) {
    let app = seeded(backend).await;
    let list = get_ok(&app, "/api/v1/contacts").await;
    let phones: HashSet<String> = list["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["phone_number"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        phones,
        HashSet::from(["+15550000001".to_string(), "+15550000002".to_string()])
    );
    let found = get_ok(&app, "/api/v1/contacts?q=0000001").await;
    assert_eq!(found["data"].as_array().map(Vec::len), Some(1));
    let sam = found["data"][0].clone();
    let sam_id = sam["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(sam["call_count"], 2);
    assert_eq!(sam["source"], "caller");
    let paged = get_ok(&app, "/api/v1/contacts?limit=1").await;
    let cursor = paged["next_cursor"]
        .as_str()
        .expect("second page")
        .to_string();
    let rest = get_ok(&app, &format!("/api/v1/contacts?limit=1&cursor={cursor}")).await;
    assert_ne!(paged["data"][0]["id"], rest["data"][0]["id"]);

    let calls = get_ok(&app, &format!("/api/v1/contacts/{sam_id}/calls")).await;
    assert_eq!(vapi_ids(&calls), ["q-c", "q-a"]);

    // Editing an automatic contact adopts it under the same id: history stays.
    let (status, body, _) = send(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/contacts/{sam_id}"),
        Some(json!({"name": "Sam Driver", "notes": "night shift"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["position"].as_i64().unwrap_or(0) > 0);
    assert_eq!(body["data"]["name"], "Sam Driver");
    assert_eq!(body["data"]["call_count"], 2);
    let (status, body, _) = send(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/contacts/{sam_id}"),
        Some(json!({"email": "sam@acme.test"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let position = body["position"].as_i64().unwrap_or(0);
    let read = get_ok(
        &app,
        &format!("/api/v1/contacts/{sam_id}?min_position={position}"),
    )
    .await;
    assert_eq!(read["data"]["email"], "sam@acme.test");
    assert_eq!(read["data"]["notes"], "night shift");
    assert!(read["position"].as_i64().unwrap_or(0) >= position);

    // Creating a contact for a number known from calls keeps that contact's id.
    let auto_b = get_ok(&app, "/api/v1/contacts?q=%2B15550000002").await["data"][0]["id"].clone();
    let (status, body, _) = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/contacts",
        Some(json!({"phone_number": "+15550000002", "name": "Dispatch Dan"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], auto_b);
    assert_eq!(body["data"]["call_count"], 1);
    assert_eq!(body["data"]["source"], "manual");

    let (status, body, _) = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/contacts",
        Some(json!({"phone_number": "+15550009999", "name": "Pat", "email": "pat@x.test"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let pat = body["id"].as_str().unwrap_or_default().to_string();
    assert!(Uuid::parse_str(&pat).is_ok());
    assert_eq!(body["data"]["name"], "Pat");
    let (status, body, _) = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/contacts",
        Some(json!({"phone_number": "+15550009999"})),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "contact_exists");
    assert_eq!(body["error"]["details"]["contact_id"], pat.as_str());
    let (status, body, _) = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/contacts",
        Some(json!({"phone_number": "  "})),
    )
    .await;
    assert_eq!(status, 422, "{body}");

    let (status, _, position) = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/v1/contacts/{pat}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let position: i64 = position.and_then(|p| p.parse().ok()).unwrap_or(0);
    assert!(position > 0);
    let (status, _) = get_as(
        &app,
        Some(&app.org.to_string()),
        &format!("/api/v1/contacts/{pat}?min_position={position}"),
    )
    .await;
    assert_eq!(status, 404);
    let all = get_ok(&app, &format!("/api/v1/contacts?min_position={position}")).await;
    assert_eq!(
        all["data"].as_array().map(Vec::len),
        Some(2),
        "deleted ones are excluded"
    );
    let (status, body, _) = send(
        &app,
        reqwest::Method::PATCH,
        "/api/v1/contacts/no-such-contact",
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    app.app.stop().await;
}

fn stripe(name: &str, org: Uuid) -> String {
    fixture(&format!("stripe/{name}.reconstructed.json")).replace("tenant_123", &org.to_string())
}

async fn billing_reports_plan_usage_and_invoices(backend: &str) {
    let app = seeded(backend).await;
    let none = get_ok(&app, "/api/v1/billing").await;
    assert_eq!(none["data"]["status"], "none");
    assert_eq!(none["data"]["used_minutes"], 0);
    for name in [
        "checkout.session.completed",
        "customer.subscription.created",
        "invoice.paid",
    ] {
        let body = stripe(name, app.org);
        let header = wire::signature::stripe_signature_header(
            STRIPE_SECRET,
            chrono::Utc::now().timestamp(),
            body.as_bytes(),
        );
        let res = app
            .client
            .post(format!("{}/api/webhooks/stripe", app.base))
            .header("content-type", "application/json")
            .header("stripe-signature", header)
            .body(body)
            .send()
            .await
            .expect("stripe delivery");
        assert_eq!(res.status(), 200, "{name}");
    }
    let head = app.head().await;
    let billing = get_ok(&app, &format!("/api/v1/billing?min_position={head}")).await;
    let b = &billing["data"];
    assert_eq!(b["status"], "active", "{billing}");
    assert!(b["subscription_id"].as_str().is_some());
    assert!(
        b["period_start"].as_str().unwrap_or_default()
            < b["period_end"].as_str().unwrap_or_default()
    );
    assert!(
        b["period_start"]
            .as_str()
            .unwrap_or_default()
            .starts_with("20"),
        "{billing}"
    );

    let usage = get_ok(&app, "/api/v1/billing/usage?from=2024-07-10&to=2024-07-13").await;
    let u = &usage["data"];
    assert_eq!(u["total_minutes"], 11);
    assert_eq!(u["total_calls"], 3);
    let minutes: Vec<i64> = u["days"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| d["minutes"].as_i64().unwrap_or(-1))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(minutes, [3, 1, 7]);
    let period = get_ok(&app, "/api/v1/billing/usage").await;
    assert!(period["data"]["days"].as_array().map(Vec::len).unwrap_or(0) >= 28);

    let invoices = get_ok(&app, "/api/v1/billing/invoices").await;
    let list = invoices["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "{invoices}");
    assert_eq!(list[0]["status"], "paid");
    assert_eq!(list[0]["amount_cents"], 2000);
    assert!(invoices["next_cursor"].is_null());
    app.app.stop().await;
}

async fn requests_need_an_organization_and_never_see_another_organizations_data(backend: &str) {
    let app = seeded(backend).await;
    // No credential at all, and a token that is not one.
    let res = reqwest::Client::new()
        .get(format!("{}/api/v1/calls", app.base))
        .header("X-Organization-Id", app.org.to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");
    let res = reqwest::Client::new()
        .get(format!("{}/api/v1/calls", app.base))
        .bearer_auth("not-a-session")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401);
    // The owner belongs to one organization: the header may be left out.
    let (status, _) = get_as(&app, None, "/api/v1/calls").await;
    assert_eq!(status, 200);
    let (status, body) = get_as(&app, Some("not-a-uuid"), "/api/v1/calls").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_organization");
    let (status, body) = get_as(&app, Some(&Uuid::new_v4().to_string()), "/api/v1/calls").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "organization_not_found");

    let other = Uuid::new_v4();
    app.app
        .state()
        .organizations
        .execute(
            &other.to_string(),
            OrganizationCommand::Create {
                id: other,
                name: "Other Co".into(),
                owner_user_id: "u2".into(),
                owner_email: "owner@other.test".into(),
                actor: "system:test".into(),
            },
            &CommandMeta::new("system:test").tenant(other),
        )
        .await
        .expect("other org");
    let other = other.to_string();
    let a = call_id(&app, "q-a");
    // An organization the caller does not belong to answers 404, like one that does not exist.
    for path in [
        format!("/api/v1/calls/{a}"),
        format!("/api/v1/calls/{a}/transcript"),
        format!("/api/v1/calls/{a}/recording"),
        format!("/api/v1/calls/{a}/actions"),
        "/api/v1/calls".to_string(),
        "/api/v1/contacts".to_string(),
        "/api/v1/calls/search?q=truck".to_string(),
        "/api/v1/calls/stats?from=2024-07-01&to=2024-07-31".to_string(),
    ] {
        let (status, body) = get_as(&app, Some(&other), &path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "organization_not_found", "{path}");
    }
    app.app.stop().await;
}

async fn unknown_and_malformed_parameters_are_rejected_naming_the_parameter(backend: &str) {
    let app = spawn_app(backend).await;
    let org = app.org.to_string();
    let cases = [
        ("/api/v1/calls?colour=red", "colour"),
        ("/api/v1/calls?limit=0", "limit"),
        ("/api/v1/calls?limit=101", "limit"),
        ("/api/v1/calls?limit=ten", "limit"),
        ("/api/v1/calls?cursor=%21%21", "cursor"),
        ("/api/v1/calls?from=yesterday", "from"),
        ("/api/v1/calls?to=2024-13-45", "to"),
        ("/api/v1/calls?from=2024-07-12&to=2024-07-11", "to"),
        ("/api/v1/calls?status=bogus", "status"),
        ("/api/v1/calls?direction=sideways", "direction"),
        ("/api/v1/calls?min_duration=-1", "min_duration"),
        ("/api/v1/calls?max_duration=long", "max_duration"),
        ("/api/v1/calls?has_recording=maybe", "has_recording"),
        ("/api/v1/calls?action_type=teleport", "action_type"),
        ("/api/v1/calls?caller=", "caller"),
        ("/api/v1/calls?min_position=soon", "min_position"),
        ("/api/v1/calls/stats?tz=Mars/Olympus", "tz"),
        ("/api/v1/calls/stats?from=2020-01-01&to=2024-01-01", "from"),
        ("/api/v1/calls/stats?limit=3", "limit"),
        ("/api/v1/calls/search", "q"),
        ("/api/v1/calls/search?q=%20", "q"),
        ("/api/v1/calls/search?q=x&cursor=abc", "cursor"),
        ("/api/v1/contacts?sort=name", "sort"),
        ("/api/v1/billing/usage?from=nope", "from"),
        ("/api/v1/billing/invoices?limit=-5", "limit"),
        ("/api/v1/calls/x/transcript?verbose=1", "verbose"),
    ];
    for (path, parameter) in cases {
        let (status, body) = get_as(&app, Some(&org), path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{path}: {body}");
        assert_eq!(
            body["error"]["details"]["parameter"], parameter,
            "{path}: {body}"
        );
    }
    let res = app
        .client
        .get(format!("{}/api/v1/calls", app.base))
        .header("X-Organization-Id", &org)
        .header("X-Min-Position", "later")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 400);
    app.app.stop().await;
}

async fn a_read_waits_for_min_position_and_answers_503_when_it_cannot_catch_up(backend: &str) {
    let app = spawn_app(backend).await;
    let written = deliver(&app, &spec_b()).await;
    assert!(written > 0);
    // Read-your-writes straight after the webhook answered.
    let page = get_ok(&app, &format!("/api/v1/calls?min_position={written}")).await;
    assert_eq!(vapi_ids(&page), ["q-b"]);
    assert!(page["position"].as_i64().unwrap_or(0) >= written);
    let res = app
        .client
        .get(format!("{}/api/v1/calls/stats", app.base))
        .header("X-Organization-Id", app.org.to_string())
        .header("X-Min-Position", written.to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    // A position the log has not reached was never an answer: waiting would not help.
    let (status, body) = get_as(
        &app,
        Some(&app.org.to_string()),
        &format!("/api/v1/calls?min_position={}", written + 1_000),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "position_beyond_log");
    app.app.stop().await;
}

/// A small deterministic generator (no extra dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn started_call(app: &TestApp, vapi_id: &str, minute: u64) -> String {
    let started = chrono::DateTime::from_timestamp(1_720_000_000 + (minute as i64) * 60, 0)
        .unwrap_or_default()
        .to_rfc3339();
    vapi_message_at(app, vapi_id, &started)
}

fn vapi_message_at(_app: &TestApp, vapi_id: &str, started: &str) -> String {
    json!({"message": {
        "type": "status-update",
        "status": "in-progress",
        "timestamp": 1_721_000_000_000i64,
        "call": {"id": vapi_id, "type": "inboundPhoneCall", "startedAt": started,
                 "customer": {"number": "+15550001234"}},
        "phoneNumber": {"number": "+15559990000"},
    }})
    .to_string()
}

async fn walking_every_page_while_calls_arrive_returns_each_earlier_call_once_in_order(
    backend: &str,
) {
    let app = spawn_app(backend).await;
    let mut rng = Lcg(42);
    // 60 calls over only 20 distinct minutes: many share started_at (the id breaks ties).
    for i in 0..60 {
        let body = started_call(&app, &format!("pre-{i}"), rng.next(20));
        app.vapi_ok(&body).await;
    }
    app.settle().await;
    let mut before: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/calls?limit=100&cursor={c}"),
            None => "/api/v1/calls?limit=100".to_string(),
        };
        let page = get_ok(&app, &path).await;
        before.extend(vapi_ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(before.len(), 60);

    // New calls (older, newer and equal to existing ones) arrive while a client pages.
    let arrivals = {
        let base = app.base.clone();
        let org = app.org;
        let client = app.client.clone();
        tokio::spawn(async move {
            let mut rng = Lcg(7);
            for i in 0..40 {
                let minute = rng.next(40);
                let started =
                    chrono::DateTime::from_timestamp(1_720_000_000 - 600 + (minute as i64) * 60, 0)
                        .unwrap_or_default()
                        .to_rfc3339();
                let body = json!({"message": {
                    "type": "status-update", "status": "in-progress",
                    "timestamp": 1_721_000_000_000i64,
                    "call": {"id": format!("new-{i}"), "type": "inboundPhoneCall",
                             "startedAt": started, "customer": {"number": "+15550004321"}},
                    "phoneNumber": {"number": "+15559990000"},
                }})
                .to_string();
                let res = client
                    .post(format!("{base}/api/webhooks/vapi/{org}"))
                    .header("content-type", "application/json")
                    .header("x-vapi-secret", VAPI_SECRET)
                    .body(body)
                    .send()
                    .await
                    .expect("delivery");
                assert_eq!(res.status(), 200);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };
    let mut seen: Vec<(String, String, String)> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/calls?limit=7&cursor={c}"),
            None => "/api/v1/calls?limit=7".to_string(),
        };
        let page = get_ok(&app, &path).await;
        for c in page["data"].as_array().cloned().unwrap_or_default() {
            seen.push((
                c["started_at"].as_str().unwrap_or_default().to_string(),
                c["id"].as_str().unwrap_or_default().to_string(),
                c["vapi_call_id"].as_str().unwrap_or_default().to_string(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    arrivals.await.expect("arrivals");
    // Strictly ordered newest first (started_at DESC, id DESC): so no row repeats.
    for pair in seen.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            (a.0.as_str(), a.1.as_str()) > (b.0.as_str(), b.1.as_str()),
            "out of order: {a:?} then {b:?}"
        );
    }
    let walked: Vec<&String> = seen
        .iter()
        .map(|s| &s.2)
        .filter(|v| v.starts_with("pre-"))
        .collect();
    let expected: Vec<&String> = before.iter().collect();
    assert_eq!(
        walked, expected,
        "every earlier call exactly once, in order"
    );
    app.app.stop().await;
}

crate::both_backends!(
    calls_are_listed_newest_first_and_every_filter_narrows_the_list,
    a_call_its_transcript_recording_and_actions_are_served,
    stats_total_the_range_and_bucket_days_in_the_requested_time_zone,
    transcript_search_ranks_matches_highlights_them_and_survives_a_rebuild,
    contacts_come_from_callers_and_are_created_edited_and_deleted_by_commands,
    billing_reports_plan_usage_and_invoices,
    requests_need_an_organization_and_never_see_another_organizations_data,
    unknown_and_malformed_parameters_are_rejected_naming_the_parameter,
    a_read_waits_for_min_position_and_answers_503_when_it_cannot_catch_up,
    walking_every_page_while_calls_arrive_returns_each_earlier_call_once_in_order,
);
