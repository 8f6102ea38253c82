//! Secrets stay out of the log in plaintext (sealed with the configured keys), and neither
//! secrets nor personal data reach the service's own logs.

use std::time::Duration;

use serde_json::json;

use crate::child::{sign_up_over_http, ChildService};
use crate::helpers::*;

async fn secrets_in_events_are_sealed(backend: &str) {
    let app = spawn_app_with(backend, |c| {
        c.egress.allow_http = true;
        c.egress.allow_private = true;
        // No service-wide VAPI secret: the first sync creates the organization's own.
        c.vapi_webhook_secret = None;
    })
    .await;
    let (status, connected) = app
        .post_json(
            "/api/v1/integrations/webhook/connect",
            json!({"url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(status, 200, "{connected}");
    let signing = connected["signing_secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let (status, assistant) = app
        .post_json(
            "/api/v1/assistants",
            json!({"name": "Dispatch line", "template_slug": "trucking-dispatch",
                   "variables": {"company_name": "Acme Trucking"}}),
        )
        .await;
    assert_eq!(status, 201, "{assistant}");
    let id = assistant["data"]["id"].as_str().expect("id");
    let (status, synced) = app
        .post_json(&format!("/api/v1/assistants/{id}/sync"), json!({}))
        .await;
    assert_eq!(status, 200, "{synced}");
    let payloads = app
        .strings("SELECT CAST(payload AS TEXT) FROM events WHERE event_type IN ('WebhookEndpointRegistered', 'WebhookAuthConfigured')")
        .await;
    assert_eq!(payloads.len(), 2, "{payloads:?}");
    for payload in &payloads {
        assert!(payload.contains("cfx-sealed:v1:"), "not sealed: {payload}");
        assert!(
            !payload.contains(&signing),
            "plaintext signing secret in the log"
        );
        assert!(
            !payload.contains("vapi_"),
            "plaintext VAPI secret in the log: {payload}"
        );
    }
    let everything = app
        .strings("SELECT CAST(payload AS TEXT) FROM events")
        .await
        .join("\n");
    assert!(!everything.contains(&signing));
    app.app.stop().await;
}

crate::both_backends!(secrets_in_events_are_sealed);

/// A scenario against the real binary with its log captured at debug level: the emails,
/// phone numbers and secrets it used appear nowhere in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_log_carries_no_secret_or_personal_data() {
    let url = eventlog::testing::fresh_url("postgres").await;
    let service = ChildService::start(
        &url,
        &[("RUST_LOG", "debug,sqlx=warn,hyper=info,reqwest=info")],
    );
    let email = "private.person@secret-co.test";
    let (token, org) = sign_up_over_http(&service.base, &url, email).await;
    let client = authed_client(&token);
    let phone = "+15557654321";
    let res = client
        .post(format!("{}/api/v1/contacts", service.base))
        .json(&json!({"phone_number": phone, "name": "Pat Private", "email": "pat@private.test"}))
        .send()
        .await
        .expect("contact");
    assert_eq!(res.status(), 201);
    let res = client
        .get(format!("{}/api/v1/contacts?q=%2B15557654321", service.base))
        .send()
        .await
        .expect("search");
    assert_eq!(res.status(), 200);
    let caller = "+15559871234";
    let body = json!({"message": {"type": "status-update", "status": "in-progress",
        "call": {"id": "log-call", "customer": {"number": caller}}}})
    .to_string();
    let res = reqwest::Client::new()
        .post(format!("{}/api/webhooks/vapi/{org}", service.base))
        .header("content-type", "application/json")
        .header("x-vapi-secret", VAPI_SECRET)
        .body(body)
        .send()
        .await
        .expect("vapi");
    assert_eq!(res.status(), 200);
    // A refused delivery (wrong secret) is logged too.
    let _ = reqwest::Client::new()
        .post(format!("{}/api/webhooks/vapi/{org}", service.base))
        .header("content-type", "application/json")
        .header("x-vapi-secret", "wrong-secret-value")
        .body("{}")
        .send()
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = service.output();
    assert!(log.contains("CallFlex listening"), "log captured");
    for needle in [
        email,
        phone,
        caller,
        "pat@private.test",
        "Pat Private",
        VAPI_SECRET,
        "wrong-secret-value",
        token.as_str(),
        PASSWORD,
    ] {
        assert!(
            !log.contains(needle),
            "`{needle}` is in the service log:\n{log}"
        );
    }
}
