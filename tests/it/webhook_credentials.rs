//! Every organization can use all three VAPI authentication forms with its own secret; an
//! admin sees it once and rotates it with an overlap window; a member's first sync creates it.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::*;

fn body_signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Posts a status update authenticated in `form` with `secret`; returns the status.
async fn deliver(app: &TestApp, form: &str, secret: &str, n: usize) -> u16 {
    let body = vapi_message(
        "status-update",
        &format!("cred-call-{n}"),
        json!({"status": "in-progress"}),
    );
    let mut request = reqwest::Client::new()
        .post(format!("{}/api/webhooks/vapi/{}", app.base, app.org))
        .header("content-type", "application/json");
    request = match form {
        "shared" => request.header("x-vapi-secret", secret),
        "hmac" => {
            let now = chrono::Utc::now().timestamp();
            request.header("x-timestamp", now.to_string()).header(
                "x-signature",
                wire::signature::vapi_hmac_signature(secret, now, body.as_bytes()),
            )
        }
        _ => request.header("x-vapi-signature", body_signature(secret, &body)),
    };
    request
        .body(body)
        .send()
        .await
        .expect("deliver")
        .status()
        .as_u16()
}

async fn call(client: &reqwest::Client, app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let res = client
        .post(format!(
            "{}/api/v1/organizations/{}{path}",
            app.base, app.org
        ))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn an_organizations_own_secret_serves_every_form_and_rotates_with_an_overlap(backend: &str) {
    let app = spawn_app_with(backend, |c| c.vapi_webhook_secret = None).await;
    // A member's first sync creates the organization's secret.
    let member = app.join_as("member@acme.test", "member").await;
    let res = member
        .post(format!("{}/api/v1/assistants", app.base))
        .json(
            &json!({"name": "Dispatch", "template_slug": "trucking-dispatch",
                      "variables": {"company_name": "Acme Trucking"}}),
        )
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), 201);
    let assistant: Value = res.json().await.expect("json");
    let id = assistant["data"]["id"].as_str().expect("id");
    let res = member
        .post(format!("{}/api/v1/assistants/{id}/sync", app.base))
        .send()
        .await
        .expect("sync");
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
    // A member can neither see nor rotate it.
    let (status, _) = call(&member, &app, "/webhook-credentials/reveal", json!({})).await;
    assert_eq!(status, 403);
    let (status, _) = call(&member, &app, "/webhook-credentials/rotate", json!({})).await;
    assert_eq!(status, 403);

    // The owner sees it once.
    let (status, shown) = call(&app.client, &app, "/webhook-credentials/reveal", json!({})).await;
    assert_eq!(status, 200, "{shown}");
    let first = shown["secret"].as_str().expect("secret").to_string();
    let (status, again) = call(&app.client, &app, "/webhook-credentials/reveal", json!({})).await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], "webhook_secret_already_revealed");
    let mut n = 0;
    for form in ["shared", "hmac", "body"] {
        n += 1;
        assert_eq!(deliver(&app, form, &first, n).await, 200, "{form}");
        n += 1;
        assert_eq!(
            deliver(&app, form, "not-the-secret", n).await,
            401,
            "{form}"
        );
    }

    // Rotation: both secrets work during the overlap.
    let (status, rotated) = call(
        &app.client,
        &app,
        "/webhook-credentials/rotate",
        json!({"overlap_seconds": 3600}),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["secret"].as_str().expect("secret").to_string();
    assert_ne!(second, first);
    assert!(rotated["previous_valid_until"].is_string(), "{rotated}");
    for form in ["shared", "hmac", "body"] {
        n += 1;
        assert_eq!(deliver(&app, form, &first, n).await, 200, "old {form}");
        n += 1;
        assert_eq!(deliver(&app, form, &second, n).await, 200, "new {form}");
    }
    // No overlap: the previous secret stops at once.
    let (status, rotated) = call(
        &app.client,
        &app,
        "/webhook-credentials/rotate",
        json!({"overlap_seconds": 0}),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let third = rotated["secret"].as_str().expect("secret").to_string();
    n += 1;
    assert_eq!(deliver(&app, "shared", &second, n).await, 401);
    n += 1;
    assert_eq!(deliver(&app, "hmac", &third, n).await, 200);
    let res = app
        .client
        .get(format!(
            "{}/api/v1/organizations/{}/webhook-credentials",
            app.base, app.org
        ))
        .send()
        .await
        .expect("get");
    let view: Value = res.json().await.expect("json");
    assert_eq!(view["configured"], true, "{view}");
    assert!(!view.to_string().contains(&third), "never shown again");
    app.app.stop().await;
}

crate::both_backends!(an_organizations_own_secret_serves_every_form_and_rotates_with_an_overlap);
