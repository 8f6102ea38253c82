//! Provisioning that must survive crashes and races: a phone number purchase left "in
//! progress" by a crashed request, and two syncs of one assistant at the same time.

use std::sync::atomic::Ordering;
use std::time::Duration;

use aggregates::organization::OrganizationCommand;
use eventlog::CommandMeta;
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use super::{spawn_with_providers, Counter, Form, TWILIO_API};
use crate::helpers::*;

/// Records a purchase intent as a request that crashed right after it would have: nothing
/// else happens to it.
async fn crashed_intent(app: &TestApp, key: &str, number: Option<&str>, age_secs: i64) {
    let purchase_id = Uuid::new_v5(&app.org, format!("phone-number-purchase:{key}").as_bytes());
    let actor = format!("user:{}", app.user_id);
    app.app
        .state()
        .organizations
        .execute(
            &app.org.to_string(),
            OrganizationCommand::RequestPhoneNumberPurchase {
                purchase_id: purchase_id.to_string(),
                number: number.map(str::to_string),
                area_code: number.is_none().then(|| "415".to_string()),
                assistant_id: None,
                at: chrono::Utc::now() - chrono::TimeDelta::seconds(age_secs),
                actor: actor.clone(),
            },
            &CommandMeta::new(actor).tenant(app.org),
        )
        .await
        .expect("intent recorded");
}

/// Buying with `key` for `number`.
async fn buy(app: &TestApp, key: &str, number: &str) -> (u16, serde_json::Value) {
    app.call(
        reqwest::Method::POST,
        "/phone-numbers",
        Some(json!({ "phone_number": number })),
        Some(key),
    )
    .await
}

/// A young intent answers 409 with a retry hint; an intent older than the timeout whose
/// number Twilio has is finished (linked in VAPI, recorded) without buying again.
async fn a_purchase_left_by_a_crash_is_found_in_twilio_and_never_bought_twice(backend: &str) {
    let (app, p) = spawn_with_providers(backend).await;
    Mock::given(method("POST"))
        .and(path(format!("{TWILIO_API}/IncomingPhoneNumbers.json")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "PNnever"})))
        .expect(0)
        .mount(&p.twilio)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{TWILIO_API}/IncomingPhoneNumbers.json")))
        .and(query_param("PhoneNumber", "+14155550123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "incoming_phone_numbers": [{
                "sid": "PNdddddddddddddddddddddddddddddddd",
                "phone_number": "+14155550123",
                "friendly_name": "(415) 555-0123"
            }]
        })))
        .expect(1)
        .mount(&p.twilio)
        .await;
    Mock::given(method("POST"))
        .and(path("/phone-number"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "vapi-pn-r"})))
        .expect(1)
        .mount(&p.vapi)
        .await;

    // A purchase that began a moment ago is still running: 409, nothing asked of Twilio.
    crashed_intent(&app, "k-young", Some("+14155550123"), 5).await;
    let (status, err) = buy(&app, "k-young", "+14155550123").await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "purchase_in_progress");
    let retry_after = err["error"]["details"]["retry_after_seconds"]
        .as_i64()
        .expect("a retry hint");
    assert!((100..=120).contains(&retry_after), "{retry_after}");

    // One that began 10 minutes ago was abandoned by its request: Twilio has the number.
    crashed_intent(&app, "k-crash", Some("+14155550123"), 600).await;
    let (status, done) = buy(&app, "k-crash", "+14155550123").await;
    assert_eq!(status, 201, "{done}");
    assert_eq!(done["recovered"], true);
    assert_eq!(
        done["data"]["twilio_sid"],
        "PNdddddddddddddddddddddddddddddddd"
    );
    assert_eq!(done["data"]["vapi_phone_number_id"], "vapi-pn-r");
    assert_eq!(app.count_events("PhoneNumberPurchaseResumed").await, 1);
    assert_eq!(app.count_events("PhoneNumberPurchaseAbandoned").await, 0);
    assert_eq!(app.count_events("PhoneNumberProvisioned").await, 1);
    // And the next retry gets the recorded number.
    let (status, again) = buy(&app, "k-crash", "+14155550123").await;
    assert_eq!(status, 201);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["data"]["id"], done["data"]["id"]);
    app.app.stop().await;
    drop(p);
}

/// An old intent whose number Twilio does not have: the abandonment is recorded and the
/// retry buys, once.
async fn a_stale_purchase_twilio_never_made_is_abandoned_and_bought_once(backend: &str) {
    let (app, p) = spawn_with_providers(backend).await;
    let lookups = Counter::default();
    Mock::given(method("GET"))
        .and(path(format!("{TWILIO_API}/IncomingPhoneNumbers.json")))
        .and(query_param("PhoneNumber", "+14155550177"))
        .and(lookups.clone())
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"incoming_phone_numbers": []})),
        )
        .mount(&p.twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{TWILIO_API}/IncomingPhoneNumbers.json")))
        .and(Form(vec![("PhoneNumber", "+14155550177".into())]))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({"sid": "PNeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "phone_number": "+14155550177"}),
        ))
        .expect(1)
        .mount(&p.twilio)
        .await;
    Mock::given(method("POST"))
        .and(path("/phone-number"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "vapi-pn-s"})))
        .expect(2)
        .mount(&p.vapi)
        .await;
    crashed_intent(&app, "k-stale", Some("+14155550177"), 600).await;
    let (status, done) = buy(&app, "k-stale", "+14155550177").await;
    assert_eq!(status, 201, "{done}");
    assert_eq!(done["recovered"], false);
    assert_eq!(
        done["data"]["twilio_sid"],
        "PNeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
    );
    assert_eq!(lookups.0.load(Ordering::SeqCst), 1, "Twilio is asked first");
    assert_eq!(app.count_events("PhoneNumberPurchaseAbandoned").await, 1);
    assert_eq!(app.count_events("PhoneNumberProvisioned").await, 1);

    // An area-code purchase that crashed before choosing a number bought nothing: it is
    // abandoned without asking Twilio, then bought afresh (the search picks the number).
    crashed_intent(&app, "k-area", None, 600).await;
    Mock::given(method("GET"))
        .and(path(format!(
            "{TWILIO_API}/AvailablePhoneNumbers/US/Local.json"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "available_phone_numbers": [{"phone_number": "+14155550188"}]
        })))
        .mount(&p.twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{TWILIO_API}/IncomingPhoneNumbers.json")))
        .and(Form(vec![("PhoneNumber", "+14155550188".into())]))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({"sid": "PNffffffffffffffffffffffffffffffff", "phone_number": "+14155550188"}),
        ))
        .expect(1)
        .mount(&p.twilio)
        .await;
    let (status, done) = app
        .call(
            reqwest::Method::POST,
            "/phone-numbers",
            Some(json!({ "area_code": "415" })),
            Some("k-area"),
        )
        .await;
    assert_eq!(status, 201, "{done}");
    assert_eq!(done["data"]["number"], "+14155550188");
    assert_eq!(lookups.0.load(Ordering::SeqCst), 1, "nothing to look up");
    assert_eq!(app.count_events("PhoneNumberPurchaseAbandoned").await, 2);
    assert_eq!(app.count_events("PhoneNumberPurchaseNumberChosen").await, 1);
    app.app.stop().await;
    drop(p);
}

/// Two syncs of one assistant at once: one claims the sync and creates the VAPI assistant,
/// the other answers 409 `sync_in_progress`; VAPI sees one `POST /assistant`.
async fn two_concurrent_syncs_create_one_vapi_assistant(backend: &str) {
    let (app, p) = spawn_with_providers(backend).await;
    let creates = Counter::default();
    Mock::given(method("POST"))
        .and(path("/assistant"))
        .and(creates.clone())
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"id": "vapi-asst-1"}))
                .set_delay(Duration::from_millis(600)),
        )
        .mount(&p.vapi)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/assistant/vapi-asst-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "vapi-asst-1"})))
        .expect(1)
        .mount(&p.vapi)
        .await;
    let id = app.create_trucking_assistant().await;
    let sync = format!("/assistants/{id}/sync");
    let (a, b) = tokio::join!(app.post(&sync, json!({})), app.post(&sync, json!({})));
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    let refused = if a.0 == 409 { &a.1 } else { &b.1 };
    assert_eq!(refused["error"]["code"], "sync_in_progress");
    assert_eq!(creates.0.load(Ordering::SeqCst), 1, "one VAPI assistant");
    // The claim ended with the sync: the next one updates the same VAPI assistant.
    let (status, again) = app.post(&sync, json!({})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["created"], false);
    assert_eq!(again["vapi_assistant_id"], "vapi-asst-1");
    assert_eq!(creates.0.load(Ordering::SeqCst), 1);
    app.app.stop().await;
    drop(p);
}

/// VAPI refuses a sync: the claim is released (recorded), so the next sync may run.
async fn a_failed_sync_releases_its_claim(backend: &str) {
    let (app, p) = spawn_with_providers(backend).await;
    Mock::given(method("POST"))
        .and(path("/assistant"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"message": "bad"})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&p.vapi)
        .await;
    Mock::given(method("POST"))
        .and(path("/assistant"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "vapi-asst-2"})))
        .expect(1)
        .mount(&p.vapi)
        .await;
    let id = app.create_trucking_assistant().await;
    let sync = format!("/assistants/{id}/sync");
    let (status, err) = app.post(&sync, json!({})).await;
    assert_eq!(status, 502, "{err}");
    assert_eq!(app.count_events("AssistantSyncFailed").await, 1);
    let (status, ok) = app.post(&sync, json!({})).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["vapi_assistant_id"], "vapi-asst-2");
    app.app.stop().await;
    drop(p);
}

/// A sync that crashed after VAPI created the assistant (nothing recorded): the next sync
/// finds that assistant by our id in its metadata and updates it; VAPI gets no second one.
async fn a_sync_after_a_crash_finds_the_vapi_assistant_it_created(backend: &str) {
    let (app, p) = spawn_with_providers(backend).await;
    let id = app.create_trucking_assistant().await;
    Mock::given(method("GET"))
        .and(path("/assistant"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": "vapi-other", "metadata": {"assistantId": "someone-else"}},
            {"id": "vapi-orphan", "metadata": {"assistantId": id}},
        ])))
        .with_priority(1)
        .mount(&p.vapi)
        .await;
    let creates = Counter::default();
    Mock::given(method("POST"))
        .and(path("/assistant"))
        .and(creates.clone())
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "vapi-new"})))
        .mount(&p.vapi)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/assistant/vapi-orphan"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "vapi-orphan"})))
        .expect(1)
        .mount(&p.vapi)
        .await;
    let (status, synced) = app.post(&format!("/assistants/{id}/sync"), json!({})).await;
    assert_eq!(status, 200, "{synced}");
    assert_eq!(synced["vapi_assistant_id"], "vapi-orphan");
    assert_eq!(synced["created"], false);
    assert_eq!(
        creates.0.load(Ordering::SeqCst),
        0,
        "no second VAPI assistant"
    );
    app.app.stop().await;
    drop(p);
}

crate::both_backends!(
    a_sync_after_a_crash_finds_the_vapi_assistant_it_created,
    a_purchase_left_by_a_crash_is_found_in_twilio_and_never_bought_twice,
    a_stale_purchase_twilio_never_made_is_abandoned_and_bought_once,
    two_concurrent_syncs_create_one_vapi_assistant,
    a_failed_sync_releases_its_claim,
);
