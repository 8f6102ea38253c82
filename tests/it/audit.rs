//! `GET /api/v1/audit/{kind}/{id}` on both backends: a call's and the organization's history
//! in order, with resolved actors and masked secrets, keyset-paged; admins and owners only;
//! another organization's stream is a 404.

use serde_json::{json, Value};

use crate::helpers::*;

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let res = client.get(url).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn an_auditor_reads_a_streams_history_with_actors_and_no_secrets(backend: &str) {
    let app = spawn_app_with(backend, |c| {
        c.egress.allow_http = true;
        c.egress.allow_private = true;
        c.processes_enabled = false;
    })
    .await;
    let org = app.org.to_string();
    app.vapi_ok(&vapi_message(
        "status-update",
        "audited",
        json!({"status": "in-progress"}),
    ))
    .await;
    app.vapi_ok(&vapi_message(
        "end-of-call-report",
        "audited",
        json!({"endedReason": "customer-ended-call", "startedAt": "2024-07-15T10:00:00Z",
               "endedAt": "2024-07-15T10:01:00Z"}),
    ))
    .await;
    let (status, _) = app
        .post_json(
            "/api/v1/contacts",
            json!({"phone_number": "+15550001234", "name": "Sam"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, created) = app
        .post_json(
            "/api/v1/webhook-endpoints",
            json!({"url": "http://127.0.0.1:9/hook", "event_types": ["call.ended"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();

    let call = callflex::webhooks::vapi::call_id(app.org, "audited");
    let (status, page) = get(
        &app.client,
        &format!("{}/api/v1/audit/call/{call}", app.base),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let events = page["data"].as_array().unwrap();
    assert_eq!(events[0]["type"], "CallStarted");
    assert!(events.iter().any(|e| e["type"] == "CallEnded"));
    let sequences: Vec<i64> = events
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    assert_eq!(events[0]["actor"]["kind"], "provider");
    assert_eq!(events[0]["actor"]["provider"], "vapi");
    assert!(events[0]["correlation_id"].as_str().is_some());

    let url = format!("{}/api/v1/audit/organization/{org}", app.base);
    let (status, page) = get(&app.client, &url).await;
    assert_eq!(status, 200, "{page}");
    let events = page["data"].as_array().unwrap();
    let contact = events
        .iter()
        .find(|e| e["type"] == "ContactCreated")
        .unwrap();
    assert_eq!(contact["actor"]["kind"], "user");
    assert_eq!(contact["actor"]["email"], "owner@acme.test");
    let endpoint = events
        .iter()
        .find(|e| e["type"] == "WebhookEndpointCreated")
        .unwrap();
    assert_eq!(endpoint["data"]["WebhookEndpointCreated"]["secret"], "***");
    assert!(
        !page.to_string().contains(&secret),
        "the secret never shows"
    );
    // Keyset pages: two at a time, the same events in the same order.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = get(&app.client, &format!("{url}?limit=2&after={after}")).await;
        assert_eq!(status, 200);
        paged.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["sequence"].clone()),
        );
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    let all: Vec<Value> = events.iter().map(|e| e["sequence"].clone()).collect();
    assert_eq!(paged, all);

    // What we knew then: the organization before its rename, secrets masked.
    let before = events.last().unwrap()["position"].as_i64().unwrap();
    let (status, body) = app
        .patch_json(
            &format!("/api/v1/organizations/{org}"),
            json!({"name": "Acme Haulage"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let state_url = format!("{url}/state");
    let (status, then) = get(&app.client, &format!("{state_url}?as_of_position={before}")).await;
    assert_eq!(status, 200, "{then}");
    assert_eq!(then["historical"], true);
    assert_eq!(then["data"]["name"], "Acme Trucking");
    assert_eq!(then["position"], before);
    assert!(!then.to_string().contains(&secret));
    let (_, now) = get(
        &app.client,
        &format!("{state_url}?as_of=2999-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(now["data"]["name"], "Acme Haulage", "{now}");
    let (_, long_ago) = get(
        &app.client,
        &format!("{state_url}?as_of=2000-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(long_ago["sequence"], 0);
    let (status, _) = get(&app.client, &state_url).await;
    assert_eq!(status, 400, "as_of or as_of_position is required");

    // A member may not audit; another organization sees nothing of this one.
    let member = app.join_as("member@acme.test", "member").await;
    let (status, _) = get(&member, &format!("{}/api/v1/audit/call/{call}", app.base)).await;
    assert_eq!(status, 403);
    let other = sign_up(&app.app, "other@else.test", Some("Else Co")).await;
    let other_client = authed_client(other["token"].as_str().unwrap());
    let (status, _) = get(
        &other_client,
        &format!("{}/api/v1/audit/call/{call}", app.base),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = get(&other_client, &url).await;
    assert_eq!(status, 404);
    let (status, body) = get(&app.client, &format!("{}/api/v1/audit/user/x", app.base)).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = get(&app.client, &format!("{url}?limit=0")).await;
    assert_eq!(status, 400);
}

/// `GET /api/v1/audit`: the organization's activity across streams, narrowed by actor, kind,
/// type and time; the auditor role reads it with personal data masked; a user's history.
async fn the_organizations_activity_is_filtered_and_auditors_see_no_personal_data(backend: &str) {
    let app = spawn_app_with(backend, |c| c.processes_enabled = false).await;
    let started = chrono::Utc::now();
    app.vapi_ok(&vapi_message(
        "status-update",
        "activity",
        json!({"status": "in-progress", "customer": {"number": "+15551234567"}}),
    ))
    .await;
    let (status, _) = app
        .post_json(
            "/api/v1/contacts",
            json!({"phone_number": "+15550001234", "name": "Sam Driver"}),
        )
        .await;
    assert_eq!(status, 201);
    let auditor = app.join_as("auditor@acme.test", "auditor").await;
    let base = format!("{}/api/v1/audit", app.base);

    // Everything, by position, across the call's and the organization's streams.
    let (status, all) = get(&app.client, &base).await;
    assert_eq!(status, 200, "{all}");
    let events = all["data"].as_array().unwrap();
    let positions: Vec<i64> = events
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert!(events.iter().any(|e| e["type"] == "CallStarted"));
    assert!(events.iter().any(|e| e["type"] == "ContactCreated"));

    // By actor (exact, and a prefix up to a colon), kind, type and time range.
    let owner = format!("user:{}", app.user_id);
    let (_, mine) = get(&app.client, &format!("{base}?actor={owner}")).await;
    let mine = mine["data"].as_array().unwrap();
    assert!(!mine.is_empty());
    assert!(mine
        .iter()
        .all(|e| e["actor"]["id"] == app.user_id.as_str()));
    let (_, vapi) = get(&app.client, &format!("{base}?actor=provider:vapi")).await;
    let vapi = vapi["data"].as_array().unwrap();
    assert!(!vapi.is_empty());
    assert!(vapi.iter().all(|e| e["actor"]["provider"] == "vapi"));
    let (_, calls) = get(&app.client, &format!("{base}?kind=call")).await;
    assert_eq!(calls["data"].as_array().unwrap().len(), vapi.len());
    let (_, typed) = get(&app.client, &format!("{base}?type=ContactCreated")).await;
    assert_eq!(typed["data"].as_array().unwrap().len(), 1, "{typed}");
    let from = urlencoding(&started.to_rfc3339());
    let (_, recent) = get(&app.client, &format!("{base}?from={from}&kind=call")).await;
    assert_eq!(recent["data"], calls["data"]);
    let (_, none) = get(&app.client, &format!("{base}?to={from}&kind=call")).await;
    assert_eq!(none["data"], json!([]));
    let (status, _) = get(&app.client, &format!("{base}?from=yesterday")).await;
    assert_eq!(status, 400);
    // Keyset pages by position.
    let (_, first) = get(&app.client, &format!("{base}?limit=1")).await;
    let next = first["next_after"].as_i64().unwrap();
    let (_, second) = get(&app.client, &format!("{base}?limit=1&after={next}")).await;
    assert_eq!(second["data"][0], events[1]);

    // The auditor reads the same trail, personal data masked.
    let (status, audited) = get(&auditor, &format!("{base}?type=ContactCreated")).await;
    assert_eq!(status, 200, "{audited}");
    let text = audited.to_string();
    assert!(
        !text.contains("+15550001234") && !text.contains("Sam Driver"),
        "{text}"
    );
    assert!(text.contains("•••34"), "{text}");
    let (_, owner_view) = get(&app.client, &format!("{base}?type=ContactCreated")).await;
    assert!(owner_view.to_string().contains("+15550001234"));
    let call = callflex::webhooks::vapi::call_id(app.org, "activity");
    let (status, history) = get(&auditor, &format!("{base}/call/{call}")).await;
    assert_eq!(status, 200);
    assert!(!history.to_string().contains("+15551234567"), "{history}");
    // The auditor writes nothing: a contact is refused.
    let res = auditor
        .post(format!("{}/api/v1/contacts", app.base))
        .json(&json!({"phone_number": "+15550009999"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);

    // A user's history: every event they caused here, by position.
    let (status, user) = get(&auditor, &format!("{base}/user/{}", app.user_id)).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["data"].as_array().unwrap().len(), mine.len());

    // Members and viewers may not audit.
    let member = app.join_as("member@acme.test", "member").await;
    let (status, _) = get(&member, &base).await;
    assert_eq!(status, 403);
}

fn urlencoding(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// `?as_of` / `?as_of_position` on the call and organization detail routes: the same shape,
/// as it stood then, marked historical.
async fn detail_routes_answer_as_of_a_time_or_a_position(backend: &str) {
    let app = spawn_app_with(backend, |c| c.processes_enabled = false).await;
    app.vapi_ok(&vapi_message(
        "status-update",
        "as-of",
        json!({"status": "in-progress"}),
    ))
    .await;
    let during = app
        .scalar_i64("SELECT MAX(global_position) FROM events")
        .await;
    app.vapi_ok(&vapi_message(
        "end-of-call-report",
        "as-of",
        json!({"endedReason": "customer-ended-call", "startedAt": "2024-07-15T10:00:00Z",
               "endedAt": "2024-07-15T10:01:00Z", "analysis": {"summary": "Done."}}),
    ))
    .await;
    app.settle().await;
    let call = callflex::webhooks::vapi::call_id(app.org, "as-of");
    let url = format!("{}/api/v1/calls/{call}", app.base);
    let member = app.join_as("member@acme.test", "member").await;

    let (status, now) = get(&member, &url).await;
    assert_eq!(status, 200, "{now}");
    assert_eq!(now["data"]["status"], "ended");
    assert!(now.get("as_of").is_none(), "{now}");
    let (status, then) = get(&member, &format!("{url}?as_of_position={during}")).await;
    assert_eq!(status, 200, "{then}");
    assert_eq!(then["data"]["status"], "in-progress", "{then}");
    assert!(then["data"]["ended_at"].is_null());
    assert!(then["data"]["summary"].is_null());
    assert_eq!(then["as_of"]["historical"], true);
    assert_eq!(then["as_of"]["position"], during);
    assert!(then["as_of"]["last_position"].as_i64().unwrap() <= during);
    // The same shape as now (absent fields are the ones still null then).
    for key in ["id", "vapi_call_id", "direction", "from_number"] {
        assert_eq!(then["data"][key], now["data"][key], "{key}");
    }
    // What we knew then: the start time from the first message's arrival, corrected later
    // by the report's `startedAt`.
    assert_ne!(then["data"]["started_at"], now["data"]["started_at"]);
    for key in then["data"].as_object().unwrap().keys() {
        assert!(
            now["data"].get(key).is_some(),
            "{key} is not in the current answer"
        );
    }
    let (_, later) = get(&member, &format!("{url}?as_of=2999-01-01T00:00:00Z")).await;
    assert_eq!(later["data"], now["data"], "as of the future is now");
    let (status, _) = get(&member, &format!("{url}?as_of=2000-01-01T00:00:00Z")).await;
    assert_eq!(status, 404, "the call had not begun");
    let (status, _) = get(&member, &format!("{url}?as_of=soon")).await;
    assert_eq!(status, 400);
    let other = sign_up(&app.app, "other@else.test", Some("Else Co")).await;
    let other_client = authed_client(other["token"].as_str().unwrap());
    let (status, _) = get(&other_client, &format!("{url}?as_of_position={during}")).await;
    assert_eq!(status, 404, "another tenant's call stays invisible");

    let org_url = format!("{}/api/v1/organizations/{}", app.base, app.org);
    let before = app
        .scalar_i64("SELECT MAX(global_position) FROM events")
        .await;
    let (status, body) = app
        .patch_json(
            &format!("/api/v1/organizations/{}", app.org),
            json!({"name": "Acme Haulage"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, now) = get(&member, &org_url).await;
    assert_eq!(now["name"], "Acme Haulage");
    let (status, then) = get(&member, &format!("{org_url}?as_of_position={before}")).await;
    assert_eq!(status, 200, "{then}");
    assert_eq!(then["name"], "Acme Trucking");
    assert_eq!(then["as_of"]["historical"], true);
    assert_eq!(then["role"], "member");
}

crate::both_backends!(
    an_auditor_reads_a_streams_history_with_actors_and_no_secrets,
    the_organizations_activity_is_filtered_and_auditors_see_no_personal_data,
    detail_routes_answer_as_of_a_time_or_a_position
);
