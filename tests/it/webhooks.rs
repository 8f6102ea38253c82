//! Webhook ingestion over real HTTP, on both backends.

use serde_json::json;

use crate::helpers::*;

fn tool_call(id: &str, name: &str, args: serde_json::Value) -> serde_json::Value {
    json!({ "id": id, "type": "function", "function": { "name": name, "arguments": args } })
}

/// The realistic call of issue 3: status, a dozen transcripts, two tool calls, hang, report.
pub(crate) fn realistic_call(call: &str) -> Vec<String> {
    let mut deliveries = vec![vapi_message(
        "status-update",
        call,
        json!({"status": "in-progress"}),
    )];
    for i in 0..12 {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        deliveries.push(vapi_message(
            "transcript",
            call,
            json!({"role": role, "transcriptType": "final", "transcript": format!("line {i}"),
                   "timestamp": 1_721_000_001_000i64 + i}),
        ));
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
        json!({"toolCallList": [tool_call("tc-2", "transferCall",
            json!({"destination": "dispatch", "reason": "load"}))]}),
    ));
    deliveries.push(vapi_message("hang", call, json!({})));
    deliveries.push(vapi_message(
        "end-of-call-report",
        call,
        json!({"endedReason": "customer-ended-call", "startedAt": "2024-07-15T10:00:00Z",
               "endedAt": "2024-07-15T10:02:30Z", "cost": 0.42,
               "artifact": {"transcript": "AI: hello\nUser: bye", "recordingUrl": "https://rec.test/a.wav",
                            "messages": []},
               "analysis": {"summary": "Driver Sam called out sick.", "successEvaluation": true}}),
    ));
    deliveries
}

async fn a_realistic_call_delivered_twice_and_out_of_order_is_recorded_once(backend: &str) {
    let app = spawn_app(backend).await;
    let mut deliveries = realistic_call("call-real");
    // Out of order: the report first, then everything, then everything again reversed.
    let report = deliveries.pop().unwrap();
    app.vapi_ok(&report).await;
    for d in &deliveries {
        app.vapi_ok(d).await;
    }
    for d in deliveries.iter().rev() {
        app.vapi_ok(d).await;
    }
    app.vapi_ok(&report).await;
    app.settle().await;
    assert_eq!(app.scalar_i64("SELECT COUNT(*) FROM calls").await, 1);
    assert_eq!(app.scalar_i64("SELECT COUNT(*) FROM transcripts").await, 1);
    let segments = app.strings("SELECT segments FROM transcripts").await;
    let segments: Vec<serde_json::Value> = serde_json::from_str(&segments[0]).unwrap();
    assert_eq!(segments.len(), 12, "one segment per final transcript, once");
    let actions = app
        .strings("SELECT action_type FROM call_actions ORDER BY action_type")
        .await;
    assert_eq!(actions, vec!["driver_callout", "transfer"]);
    let status = app.strings("SELECT status FROM calls").await;
    assert_eq!(status, vec!["ended"]);
    assert_eq!(
        app.scalar_i64("SELECT CAST(duration_seconds AS BIGINT) FROM calls")
            .await,
        150
    );
    assert_eq!(app.scalar_i64("SELECT has_recording FROM calls").await, 1);
    assert_eq!(app.scalar_i64("SELECT minutes FROM usage_daily").await, 3);
    assert_eq!(app.scalar_i64("SELECT call_count FROM contacts").await, 1);
    app.app.stop().await;
}

async fn tool_calls_are_answered_with_the_seed_replies_and_redeliveries_get_the_same_answer(
    backend: &str,
) {
    let app = spawn_quiet_app(backend).await;
    let body = vapi_message(
        "tool-calls",
        "call-tools",
        json!({"toolCallList": [
            tool_call("t1", "transferCall", json!({"destination": "manager", "reason": "x"})),
            // The JSON-string form of arguments (VAPI's OpenAPI schema).
            {"id": "t2", "type": "function", "function": {"name": "takeMessage",
             "arguments": "{\"message\":\"pipe burst\",\"urgent\":true,\"messageFor\":\"Bob\"}"}},
        ]}),
    );
    let first = app.vapi_ok(&body).await;
    // Both functions were committed together: one append (one durable commit) answers both.
    // Its events carry the ids derived from the delivery's first command's idempotency key.
    let delivery = app
        .strings("SELECT delivery_key FROM webhook_deliveries WHERE provider = 'vapi'")
        .await;
    assert_eq!(delivery.len(), 1);
    let mut ids = app
        .strings("SELECT event_id FROM events WHERE aggregate_type = 'call'")
        .await;
    ids.sort();
    let one_append = |command: usize| {
        let key = format!("vapi:{}:{command}", delivery[0]);
        let mut ids: Vec<String> = (0..3)
            .map(|i| eventlog::event::keyed_event_id(&key, i).to_string())
            .collect();
        ids.sort();
        ids
    };
    assert!(
        (0..4).any(|command| one_append(command) == ids),
        "CallStarted and the two FunctionCallHandled events, in one keyed append: {ids:?}"
    );
    assert_eq!(first["results"][0]["toolCallId"], "t1");
    assert_eq!(
        first["results"][0]["result"],
        "Sorry, I don't have a manager number configured. Let me take a message instead."
    );
    assert_eq!(
        first["results"][1]["result"],
        "I've taken your message for Bob. Someone will get back to you soon."
    );
    let head = app.head().await;
    let again = app.vapi_ok(&body).await;
    assert_eq!(again, first);
    assert_eq!(app.head().await, head, "a redelivery records nothing new");
    app.settle().await;
    let data = app
        .strings("SELECT action_data FROM call_actions WHERE tool_call_id = 't2'")
        .await;
    assert!(data[0].contains("\"urgent\":true"));
    app.app.stop().await;
}

async fn a_legacy_function_call_gets_a_result_and_unknown_functions_are_declined(backend: &str) {
    let app = spawn_app(backend).await;
    let answer = app
        .vapi_ok(&fixture("vapi/function-call.legacy.2024-09.vapi4k.json"))
        .await;
    assert_eq!(
        answer,
        json!({"result": "Sorry, I can't do that on this line."})
    );
    let seed_flat = json!({
        "type": "function-call",
        "call": {"id": "flat-1", "customer": {"number": "+15551112222"}},
        "functionCall": {"name": "scheduleCallback",
                         "parameters": {"phoneNumber": "+15551112222", "reason": "quote"}}
    });
    let answer = app.vapi_ok(&seed_flat.to_string()).await;
    assert_eq!(
        answer["result"],
        "Perfect, I've scheduled a callback for you. Someone will call you at +15551112222 as soon as possible."
    );
    app.app.stop().await;
}

async fn public_vapi_fixtures_are_accepted_and_projected(backend: &str) {
    let app = spawn_app(backend).await;
    for name in [
        "status-update.in-progress.2024-09.vapi4k.json",
        "transcript.docs.json",
        "speech-update.docs.json",
        "conversation-update.reconstructed.json",
        "hang.reconstructed.json",
        "tool-calls.2024-09.vapi4k.json",
        "end-of-call-report.2024-07.inbound-twilio.vapi4k.json",
    ] {
        let res = app.post_vapi(&fixture(&format!("vapi/{name}"))).await;
        let status = res.status();
        assert_eq!(status, 200, "{name}: {}", res.text().await.unwrap());
    }
    app.settle().await;
    let ended = app
        .strings(
            "SELECT ended_reason FROM calls WHERE vapi_call_id = \
             'ef71627d-9673-40f8-8491-31aa3fe7a540'",
        )
        .await;
    assert_eq!(ended, vec!["customer-ended-call"]);
    let text = app
        .strings("SELECT final_text FROM transcripts WHERE final_text IS NOT NULL")
        .await;
    assert_eq!(text.len(), 1);
    assert!(!text[0].is_empty());
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM webhook_deliveries WHERE provider = 'vapi'")
            .await,
        7,
        "every raw delivery is kept for audit"
    );
    app.app.stop().await;
}

/// A long call's end-of-call report (here 1,200 turns in both message formats, about 2 MB)
/// is accepted whole: VAPI does not retry a 413, so a tight limit would lose the report.
async fn a_long_calls_end_of_call_report_over_one_megabyte_is_accepted(backend: &str) {
    let app = spawn_app(backend).await;
    let turn = "I need the load on route 12 moved to Thursday because the trailer is in the shop. ";
    let messages: Vec<_> = (0..1_200)
        .map(|i| {
            let role = if i % 2 == 0 { "bot" } else { "user" };
            json!({"role": role, "message": turn.repeat(4), "time": 1_721_000_000_000i64 + i,
                   "secondsFromStart": i})
        })
        .collect();
    let openai: Vec<_> = (0..1_200)
        .map(|i| json!({"role": if i % 2 == 0 { "assistant" } else { "user" }, "content": turn.repeat(4)}))
        .collect();
    let transcript = turn.repeat(3_600);
    let body = vapi_message(
        "end-of-call-report",
        "long-call",
        json!({"endedReason": "customer-ended-call",
               "artifact": {"messages": messages, "messagesOpenAIFormatted": openai,
                            "transcript": transcript}}),
    );
    assert!(body.len() > 1024 * 1024, "{} bytes", body.len());
    app.vapi_ok(&body).await;
    app.settle().await;
    assert_eq!(
        app.scalar_i64("SELECT CAST(LENGTH(final_text) AS BIGINT) FROM transcripts")
            .await,
        transcript.len() as i64
    );
    app.app.stop().await;
}

/// A sender's absurd duration or cost (1e308 overflows any total it is added to) must not
/// stall the usage read model: the duration comes from the report's times instead.
async fn absurd_durations_and_costs_are_not_metered(backend: &str) {
    let app = spawn_app(backend).await;
    for call in ["absurd-1", "absurd-2"] {
        let body = vapi_message(
            "end-of-call-report",
            call,
            json!({"endedReason": "customer-ended-call", "durationSeconds": 1e308,
                   "cost": 1e300, "startedAt": "2024-07-15T05:00:00Z",
                   "endedAt": "2024-07-15T05:01:30Z"}),
        );
        app.vapi_ok(&body).await;
    }
    // `settle` fails if any projector stalled.
    app.settle().await;
    assert_eq!(app.scalar_i64("SELECT minutes FROM usage_daily").await, 4);
    assert_eq!(
        app.scalar_i64("SELECT CAST(seconds AS BIGINT) FROM usage_daily")
            .await,
        180
    );
    assert_eq!(
        app.scalar_i64("SELECT CAST(cost AS BIGINT) FROM usage_daily")
            .await,
        0
    );
    app.app.stop().await;
}

async fn every_vapi_authentication_scheme_is_checked_and_failures_record_nothing(backend: &str) {
    let app = spawn_app(backend).await;
    let url = format!("{}/api/webhooks/vapi/{}", app.base, app.org);
    let body = vapi_message("status-update", "auth-1", json!({"status": "ringing"}));
    let send = |headers: Vec<(&'static str, String)>| {
        let mut req = app
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let baseline = app.head().await;
    let res = send(vec![]).await.unwrap();
    assert_eq!(res.status(), 401);
    let err: serde_json::Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "invalid_signature");
    assert_eq!(
        send(vec![("x-vapi-secret", "wrong".into())])
            .await
            .unwrap()
            .status(),
        401
    );
    let bad_sig = wire::signature::hmac_sha256_hex("wrong", body.as_bytes());
    assert_eq!(
        send(vec![("x-vapi-signature", bad_sig)])
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        app.head().await,
        baseline,
        "a refused delivery records nothing"
    );

    let good = wire::signature::hmac_sha256_hex(VAPI_SECRET, body.as_bytes());
    assert_eq!(
        send(vec![("x-vapi-signature", good)])
            .await
            .unwrap()
            .status(),
        200
    );
    let now = chrono::Utc::now().timestamp();
    let sig = wire::signature::vapi_hmac_signature(VAPI_SECRET, now, body.as_bytes());
    let res = send(vec![("x-signature", sig), ("x-timestamp", now.to_string())])
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let stale = now - 3600;
    let sig = wire::signature::vapi_hmac_signature(VAPI_SECRET, stale, body.as_bytes());
    let res = send(vec![
        ("x-signature", sig),
        ("x-timestamp", stale.to_string()),
    ])
    .await
    .unwrap();
    assert_eq!(res.status(), 401, "a replayed old signature is refused");
    app.app.stop().await;
}

async fn bad_input_gets_a_clear_error_and_never_poisons_the_log(backend: &str) {
    let app = spawn_app(backend).await;
    let url = format!("{}/api/webhooks/vapi/{}", app.base, app.org);
    let post = |url: String, ct: &'static str, body: Vec<u8>| {
        app.client
            .post(url)
            .header("content-type", ct)
            .header("x-vapi-secret", VAPI_SECRET)
            .body(body)
            .send()
    };
    let baseline = app.head().await;
    let res = post(url.clone(), "application/json", b"{not json".to_vec())
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let err: serde_json::Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "invalid_payload");
    assert_eq!(
        post(url.clone(), "text/plain", b"{}".to_vec())
            .await
            .unwrap()
            .status(),
        415
    );
    // Just over the limit: small enough that the client finishes sending before the server
    // answers (a much larger body can be cut off by a connection reset instead).
    let limit = app.app.state().config.max_body_bytes;
    let huge = vec![b' '; limit + 4096];
    assert_eq!(
        post(url.clone(), "application/json", huge)
            .await
            .unwrap()
            .status(),
        413
    );
    let other = format!("{}/api/webhooks/vapi/{}", app.base, uuid::Uuid::new_v4());
    assert_eq!(
        post(other, "application/json", b"{}".to_vec())
            .await
            .unwrap()
            .status(),
        404
    );
    let not_uuid = format!("{}/api/webhooks/vapi/acme", app.base);
    assert_eq!(
        post(not_uuid, "application/json", b"{}".to_vec())
            .await
            .unwrap()
            .status(),
        400
    );
    let no_call = vapi_message("status-update", "", json!({"status": "ringing"}));
    let res = post(url.clone(), "application/json", no_call.into_bytes())
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "kept for audit, but no call to write to");
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["ignored"].is_string());
    assert_eq!(app.head().await, baseline);
    // The log still takes good deliveries afterwards.
    app.vapi_ok(&vapi_message(
        "status-update",
        "ok-1",
        json!({"status": "ringing"}),
    ))
    .await;
    assert!(app.head().await > baseline);
    app.app.stop().await;
}

async fn an_assistant_request_is_answered_with_the_linked_assistant(backend: &str) {
    use aggregates::organization::OrganizationCommand;
    let app = spawn_app(backend).await;
    let body = vapi_message("assistant-request", "ar-1", json!({}));
    let answer = app.vapi_ok(&body).await;
    assert!(
        answer["error"].is_string(),
        "no assistant yet: spoken error {answer}"
    );
    let orgs = &app.app.state().organizations;
    let meta = eventlog::CommandMeta::new("system:test");
    let id = app.org.to_string();
    for cmd in [
        OrganizationCommand::CreateAssistant {
            assistant_id: "a1".into(),
            name: "Dispatch".into(),
            template_slug: None,
            system_prompt: "You answer for Acme.".into(),
            first_message: None,
            voice_id: None,
            model: None,
            functions: vec![],
            variables: Default::default(),
            actor: "system:test".into(),
        },
        OrganizationCommand::MarkAssistantSynced {
            assistant_id: "a1".into(),
            vapi_assistant_id: "vapi-asst-1".into(),
            actor: "system:test".into(),
        },
        OrganizationCommand::ProvisionPhoneNumber {
            phone_number_id: "pn1".into(),
            number: "+15559990000".into(),
            provider_sid: "PN1".into(),
            assistant_id: Some("a1".into()),
            vapi_phone_number_id: None,
            actor: "system:test".into(),
        },
    ] {
        orgs.execute(&id, cmd, &meta).await.unwrap();
    }
    let answer = app
        .vapi_ok(&vapi_message("assistant-request", "ar-2", json!({})))
        .await;
    assert_eq!(answer, json!({"assistantId": "vapi-asst-1"}));
    app.app.stop().await;
}

/// VAPI asks where to transfer when the model named no destination: the organization's
/// dispatch line (else its manager line), recorded as a transfer action on the call.
async fn a_transfer_destination_request_is_answered_with_the_configured_line(backend: &str) {
    use aggregates::organization::{OrganizationCommand, OrganizationSettings, TransferNumbers};
    let app = spawn_app(backend).await;
    let settle_numbers = |numbers: TransferNumbers| {
        let state = app.app.state().clone();
        let org = app.org.to_string();
        async move {
            let settings = OrganizationSettings {
                transfer_numbers: numbers,
                ..Default::default()
            };
            let cmd = OrganizationCommand::UpdateSettings {
                settings,
                actor: "system:test".into(),
            };
            let meta = eventlog::CommandMeta::new("system:test");
            state.organizations.execute(&org, cmd, &meta).await.unwrap();
        }
    };
    // The test organization has a dispatch line.
    let answer = app
        .vapi_ok(&vapi_message(
            "transfer-destination-request",
            "tdr-1",
            json!({}),
        ))
        .await;
    assert_eq!(
        answer,
        json!({"destination": {"type": "number", "number": "+15550002222",
               "message": "I'm transferring you to dispatch now. Please hold."}})
    );
    settle_numbers(TransferNumbers {
        manager: Some("+15550003333".into()),
        ..Default::default()
    })
    .await;
    let body = vapi_message("transfer-destination-request", "tdr-2", json!({}));
    let answer = app.vapi_ok(&body).await;
    assert_eq!(
        answer,
        json!({"destination": {"type": "number", "number": "+15550003333",
               "message": "I'm transferring you to manager now. Please hold."}})
    );
    let head = app.head().await;
    assert_eq!(
        app.vapi_ok(&body).await,
        answer,
        "a redelivery gets the same answer"
    );
    assert_eq!(app.head().await, head, "and records nothing new");
    settle_numbers(TransferNumbers::default()).await;
    let answer = app
        .vapi_ok(&vapi_message(
            "transfer-destination-request",
            "tdr-3",
            json!({}),
        ))
        .await;
    assert_eq!(
        answer,
        json!({"error": "Sorry, I don't have a dispatch number configured. Let me take a message instead."})
    );
    app.settle().await;
    let data = app
        .strings("SELECT action_data FROM call_actions WHERE action_type = 'transfer'")
        .await;
    assert_eq!(data.len(), 3, "{data:?}");
    assert!(data.iter().any(|d| d.contains("+15550003333")), "{data:?}");
    app.app.stop().await;
}

async fn twilio_status_callbacks_are_verified_and_update_the_matching_call(backend: &str) {
    let app = spawn_app(backend).await;
    app.vapi_ok(&vapi_message(
        "status-update",
        "tw-1",
        json!({"status": "in-progress"}),
    ))
    .await;
    app.settle().await;
    let params = [
        ("CallSid", "CAtw-1"),
        ("AccountSid", "AC123"),
        ("CallStatus", "completed"),
        ("From", "+15551230000"),
        ("To", "+15559990000"),
        ("CallDuration", "42"),
        ("SequenceNumber", "3"),
    ];
    let post = |sig: Option<&'static str>| post_twilio(&app, &params, sig);
    assert_eq!(post(Some("bm90LXZhbGlk")).await.status(), 403);
    let res = post(None).await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["matched"], true);
    app.settle().await;
    assert_eq!(app.strings("SELECT status FROM calls").await, vec!["ended"]);
    assert_eq!(
        app.strings("SELECT ended_reason FROM calls").await,
        vec!["twilio-completed"]
    );
    app.app.stop().await;
}

/// Posts a Twilio status callback with these form fields, signed correctly unless a
/// signature is given.
async fn post_twilio(
    app: &crate::helpers::TestApp,
    params: &[(&str, &str)],
    signature: Option<&str>,
) -> reqwest::Response {
    let pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let url = format!("{PUBLIC_URL}/api/webhooks/twilio/status");
    let signed = wire::signature::twilio_signature(TWILIO_TOKEN, &url, &pairs);
    let form: String = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B")))
        .collect::<Vec<_>>()
        .join("&");
    app.client
        .post(format!("{}/api/webhooks/twilio/status", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", signature.unwrap_or(&signed))
        .body(form)
        .send()
        .await
        .unwrap()
}

/// Twilio can call back before VAPI's first message about the call (or before that message
/// is projected): the status is kept on the CallSid's stream, durably, and applied when a
/// VAPI message first names that CallSid.
async fn a_twilio_callback_before_its_vapi_call_is_applied_when_the_call_appears(backend: &str) {
    let app = spawn_app(backend).await;
    let params = [
        ("CallSid", "CAtw-early"),
        ("CallStatus", "ringing"),
        ("From", "+15551230000"),
        ("To", "+15559990000"),
        ("Direction", "inbound"),
        ("SequenceNumber", "0"),
    ];
    let res = post_twilio(&app, &params, None).await;
    assert_eq!(res.status(), 200);
    let first: serde_json::Value = res.json().await.unwrap();
    assert_eq!(first["matched"], false);
    assert_eq!(first["pending"], true);
    assert_eq!(app.count_events("StatusReported").await, 1);
    let head = app.head().await;
    let again: serde_json::Value = post_twilio(&app, &params, None).await.json().await.unwrap();
    assert_eq!(again, first, "a redelivery gets the first answer");
    assert_eq!(app.head().await, head, "and records nothing new");
    // VAPI's first message about the call carries no status of its own.
    let transcript = vapi_message(
        "transcript",
        "tw-early",
        json!({"role": "user", "transcriptType": "final", "transcript": "hello"}),
    );
    app.vapi_ok(&transcript).await;
    app.settle().await;
    assert_eq!(
        app.strings("SELECT status FROM calls").await,
        vec!["ringing"]
    );
    assert_eq!(app.count_events("CallStatusChanged").await, 1);
    // Once applied, nothing applies it again.
    let other = vapi_message(
        "transcript",
        "tw-early",
        json!({"role": "assistant", "transcriptType": "final", "transcript": "hi there"}),
    );
    app.vapi_ok(&other).await;
    assert_eq!(app.count_events("CallStatusChanged").await, 1);
    // The next callback finds the call at once.
    let completed = [
        ("CallSid", "CAtw-early"),
        ("CallStatus", "completed"),
        ("CallDuration", "12"),
        ("SequenceNumber", "2"),
    ];
    let res: serde_json::Value = post_twilio(&app, &completed, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(res["matched"], true, "{res}");
    app.settle().await;
    assert_eq!(app.strings("SELECT status FROM calls").await, vec!["ended"]);
    app.app.stop().await;
}

fn stripe_fixture(name: &str, org: uuid::Uuid) -> String {
    fixture(&format!("stripe/{name}.reconstructed.json")).replace("tenant_123", &org.to_string())
}

async fn stripe_events_drive_the_subscription_and_redeliveries_change_nothing(backend: &str) {
    let app = spawn_app(backend).await;
    let post = |body: String, secret: &'static str| {
        let header = wire::signature::stripe_signature_header(
            secret,
            chrono::Utc::now().timestamp(),
            body.as_bytes(),
        );
        app.client
            .post(format!("{}/api/webhooks/stripe", app.base))
            .header("content-type", "application/json")
            .header("stripe-signature", header)
            .body(body)
            .send()
    };
    let checkout = stripe_fixture("checkout.session.completed", app.org);
    let baseline = app.head().await;
    assert_eq!(
        post(checkout.clone(), "whsec_wrong")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(app.head().await, baseline, "a forged event records nothing");
    for name in [
        "checkout.session.completed",
        "customer.subscription.created",
        "invoice.paid",
    ] {
        let res = post(stripe_fixture(name, app.org), STRIPE_SECRET)
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{name}");
    }
    // The same invoice's invoice.payment_succeeded (another event id) records nothing new.
    let succeeded = stripe_fixture("invoice.paid", app.org)
        .replace("\"invoice.paid\"", "\"invoice.payment_succeeded\"")
        .replacen("\"id\": \"evt_", "\"id\": \"evt_succeeded_", 1);
    assert!(succeeded.contains("evt_succeeded_"), "{succeeded}");
    assert_eq!(post(succeeded, STRIPE_SECRET).await.unwrap().status(), 200);
    assert_eq!(app.count_events("InvoicePaid").await, 1);
    let head = app.head().await;
    assert_eq!(post(checkout, STRIPE_SECRET).await.unwrap().status(), 200);
    assert_eq!(
        app.head().await,
        head,
        "redelivered event id records nothing"
    );
    // A failed payment moves the subscription to past_due...
    let failed = stripe_fixture("invoice.payment_failed", app.org);
    assert_eq!(post(failed, STRIPE_SECRET).await.unwrap().status(), 200);
    app.settle().await;
    assert_eq!(
        app.strings("SELECT status FROM billing_subscriptions")
            .await,
        vec!["past_due"]
    );
    // ...and an OLDER subscription.updated arriving late does not roll it back to active.
    let stale = stripe_fixture("customer.subscription.updated", app.org);
    assert_eq!(post(stale, STRIPE_SECRET).await.unwrap().status(), 200);
    app.settle().await;
    assert_eq!(
        app.strings("SELECT status FROM billing_subscriptions")
            .await,
        vec!["past_due"]
    );
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM billing_invoices")
            .await,
        2
    );
    let deleted = stripe_fixture("customer.subscription.deleted", app.org);
    assert_eq!(post(deleted, STRIPE_SECRET).await.unwrap().status(), 200);
    app.settle().await;
    assert_eq!(
        app.strings("SELECT status FROM billing_subscriptions")
            .await,
        vec!["canceled"]
    );
    app.app.stop().await;
}

/// The VAPI path answers a redelivery from the log, not from the ledger: a service that
/// restarted (or another instance) gives the same answers and records nothing new.
async fn redeliveries_to_a_restarted_service_get_the_same_answers(backend: &str) {
    let mut app = spawn_quiet_app(backend).await;
    let deliveries = realistic_call("call-restart");
    let mut answers = Vec::new();
    for body in &deliveries {
        answers.push(app.vapi_ok(body).await);
    }
    app.settle().await;
    let head = app.head().await;

    let restarted = callflex::startup::Application::build(app.app.state().config.clone())
        .await
        .expect("restarts");
    app.base = format!("http://127.0.0.1:{}", restarted.port());
    let old = std::mem::replace(&mut app.app, restarted);
    old.stop().await;

    for (body, first) in deliveries.iter().zip(&answers) {
        assert_eq!(&app.vapi_ok(body).await, first, "redelivery of {body}");
    }
    assert_eq!(app.head().await, head, "redeliveries record nothing new");
    app.app.stop().await;
}

/// A NUL character (`\u0000` in JSON) cannot be stored by PostgreSQL; it must not turn a
/// delivery into an endless 5xx retry loop. It is kept as U+FFFD, the same on both backends.
async fn nul_characters_and_cut_emoji_are_stored_as_the_replacement_character(backend: &str) {
    let app = spawn_app(backend).await;
    app.vapi_ok(&vapi_message(
        "status-update",
        "call-nul",
        json!({"status": "in-progress"}),
    ))
    .await;
    let body = vapi_message(
        "transcript",
        "call-nul",
        json!({"role": "user", "transcriptType": "final", "transcript": "pipe\u{0}burst"}),
    );
    let answer = app.vapi_ok(&body).await;
    assert!(answer["position"].as_i64().unwrap_or(0) > 0, "{answer}");
    app.settle().await;
    let text = app.strings("SELECT full_text FROM transcripts").await;
    assert_eq!(text, vec!["user: pipe\u{fffd}burst\n".to_string()]);
    // JavaScript's JSON.stringify writes half an emoji as a lone surrogate escape: legal JSON
    // text that serde_json refuses. The message is kept, minus that character.
    let cut = r#"{"message":{"type":"transcript","role":"assistant","transcriptType":"final","transcript":"Sure \ud83d","call":{"id":"call-nul"}}}"#;
    let answer = app.vapi_ok(cut).await;
    assert!(answer["position"].as_i64().unwrap_or(0) > 0, "{answer}");
    app.settle().await;
    let text = app.strings("SELECT full_text FROM transcripts").await;
    assert_eq!(
        text,
        vec!["user: pipe\u{fffd}burst\nassistant: Sure \u{fffd}\n".to_string()]
    );
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM webhook_deliveries WHERE provider = 'vapi'")
            .await,
        3,
        "the raw deliveries are kept"
    );
    app.app.stop().await;
}

/// Every answer says how long it spent inside the service and, of that, in the log's appends.
async fn answers_report_time_inside_the_service_and_in_the_log(backend: &str) {
    let app = spawn_app(backend).await;
    let timing = |res: &reqwest::Response| -> (f64, f64) {
        let header = res
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let metric = |name: &str| -> f64 {
            header
                .split(',')
                .find_map(|part| part.trim().strip_prefix(&format!("{name};dur=")))
                .and_then(|ms| ms.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in Server-Timing {header:?}"))
        };
        (metric("app"), metric("log"))
    };
    let tool = vapi_message(
        "tool-calls",
        "call-timing",
        json!({"toolCallList": [tool_call("t1", "takeMessage", json!({"message": "hi"}))]}),
    );
    let res = app.post_vapi(&tool).await;
    assert_eq!(res.status(), 200);
    let (inside, log) = timing(&res);
    assert!(log > 0.0 && log <= inside, "app {inside} ms, log {log} ms");
    // A message that records no event spends no time in the log.
    let speech = vapi_message(
        "speech-update",
        "call-timing",
        json!({"status": "started", "role": "user"}),
    );
    let res = app.post_vapi(&speech).await;
    assert_eq!(res.status(), 200);
    assert_eq!(timing(&res).1, 0.0);
    // Operators see how appends were written.
    let health: serde_json::Value = reqwest::get(format!("{}/health", app.ops))
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    match backend {
        "postgres" => assert!(
            health["group_commit"]["appends"].as_u64() >= Some(1),
            "{health}"
        ),
        _ => assert!(health["group_commit"].is_null(), "{health}"),
    }
    app.app.stop().await;
}

crate::both_backends!(
    answers_report_time_inside_the_service_and_in_the_log,
    nul_characters_and_cut_emoji_are_stored_as_the_replacement_character,
    redeliveries_to_a_restarted_service_get_the_same_answers,
    a_realistic_call_delivered_twice_and_out_of_order_is_recorded_once,
    tool_calls_are_answered_with_the_seed_replies_and_redeliveries_get_the_same_answer,
    a_legacy_function_call_gets_a_result_and_unknown_functions_are_declined,
    public_vapi_fixtures_are_accepted_and_projected,
    absurd_durations_and_costs_are_not_metered,
    a_long_calls_end_of_call_report_over_one_megabyte_is_accepted,
    every_vapi_authentication_scheme_is_checked_and_failures_record_nothing,
    bad_input_gets_a_clear_error_and_never_poisons_the_log,
    an_assistant_request_is_answered_with_the_linked_assistant,
    a_transfer_destination_request_is_answered_with_the_configured_line,
    twilio_status_callbacks_are_verified_and_update_the_matching_call,
    a_twilio_callback_before_its_vapi_call_is_applied_when_the_call_appears,
    stripe_events_drive_the_subscription_and_redeliveries_change_nothing,
);
