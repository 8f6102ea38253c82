//! Inbound integration events (`POST /api/webhooks/integrations/{provider}`), signed by the
//! Standard Webhooks scheme with the connected integration's secret, on both backends.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::*;

/// Signs as a customer's system would (the scheme, written here, not the service's code).
fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

async fn send(app: &TestApp, secret: &str, id: &str, timestamp: i64, body: &Value) -> (u16, Value) {
    let text = body.to_string();
    let res = reqwest::Client::new()
        .post(format!("{}/api/webhooks/integrations/zapier", app.base))
        .header("content-type", "application/json")
        .header("x-callflex-organization", app.org.to_string())
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", sign(secret, id, timestamp, &text))
        .body(text)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn a_customers_system_writes_contacts_through_signed_events(backend: &str) {
    let app = spawn_app(backend).await;
    let (status, connected) = app
        .post_json(
            "/api/v1/integrations/zapier/connect",
            json!({"url": "https://hooks.zapier.com/hooks/catch/1/abc", "event_types": ["contact.created"]}),
        )
        .await;
    assert_eq!(status, 200, "{connected}");
    let secret = connected["signing_secret"].as_str().unwrap().to_string();
    let now = chrono::Utc::now().timestamp();

    let upsert = json!({"type": "contact.upsert", "data": {
        "phone_number": "+15550007777", "name": "Pat Shipper", "email": "pat@shipper.test"}});
    let (status, first) = send(&app, &secret, "msg_1", now, &upsert).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["created"], true);
    let contact_id = first["contact_id"].as_str().unwrap().to_string();
    let events = app.head().await;
    // The same event again: the first answer, nothing new in the log.
    let (status, again) = send(&app, &secret, "msg_1", now, &upsert).await;
    assert_eq!(status, 200);
    assert_eq!(again, first);
    assert_eq!(app.head().await, events);

    let note = json!({"type": "contact.note", "data": {"phone_number": "+15550007777", "note": "Prefers mornings"}});
    let (status, noted) = send(&app, &secret, "msg_2", now, &note).await;
    assert_eq!(status, 200, "{noted}");
    assert_eq!(noted["created"], false);
    assert_eq!(noted["contact_id"], contact_id.as_str());
    let callback = json!({"type": "callback.request", "data": {"phone_number": "+15550007777",
        "reason": "Quote for Friday", "preferred_time": "after 3pm"}});
    let (status, asked) = send(&app, &secret, "msg_3", now, &callback).await;
    assert_eq!(status, 200, "{asked}");
    let position = asked["position"].as_i64().unwrap();
    let res = app
        .client
        .get(format!(
            "{}/api/v1/contacts/{contact_id}?min_position={position}",
            app.base
        ))
        .send()
        .await
        .unwrap();
    let contact: Value = res.json().await.unwrap();
    assert_eq!(contact["data"]["name"], "Pat Shipper");
    let notes = contact["data"]["notes"].as_str().unwrap();
    assert!(notes.contains("Prefers mornings"), "{notes}");
    assert!(
        notes.contains("Callback requested via zapier: Quote for Friday (preferred: after 3pm)"),
        "{notes}"
    );

    // Refusals: a bad signature or a stale timestamp 401, an unknown type 422.
    let (status, _) = send(
        &app,
        "whsec_bm90LXRoZS1zZWNyZXQtYXQtYWxsLTEyMw==",
        "msg_4",
        now,
        &upsert,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = send(&app, &secret, "msg_5", now - 600, &upsert).await;
    assert_eq!(status, 401);
    let (status, body) = send(
        &app,
        &secret,
        "msg_6",
        now,
        &json!({"type": "totally.bogus", "data": {}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "unknown_event_type");
    let (status, _) = send(
        &app,
        &secret,
        "msg_7",
        now,
        &json!({"type": "contact.upsert", "data": {"phone_number": "call me"}}),
    )
    .await;
    assert_eq!(status, 422);
}

crate::both_backends!(a_customers_system_writes_contacts_through_signed_events);
