//! The webhook integration cannot be pointed into our own network: every refusal of the
//! egress policy, a public-looking name that resolves to loopback, and redirects.

use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

async fn webhook_targets_inside_our_network_are_refused(backend: &str) {
    // Defaults: https only, public addresses only.
    let app = spawn_app(backend).await;
    for url in [
        "http://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://localhost/x",
        "https://2130706433/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:127.0.0.1]/x",
        "https://10.0.0.8/x",
    ] {
        let (status, body) = app
            .post("/integrations/webhook/connect", json!({ "url": url }))
            .await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["error"]["details"]["parameter"], "url", "{body}");
    }
    app.app.stop().await;

    // A public-looking name that resolves to the internal listener: saved, but the test
    // delivery never connects.
    let internal = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&internal)
        .await;
    let port = internal.address().port();
    let app = spawn_app_with(backend, |c| {
        c.egress.allow_http = true;
        c.egress
            .resolve
            .insert("hooks.example.com".into(), "127.0.0.1".parse().unwrap());
    })
    .await;
    let url = format!("http://hooks.example.com:{port}/x");
    let (status, body) = app
        .post("/integrations/webhook/connect", json!({ "url": url }))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, test) = app.post("/integrations/webhook/test", json!({})).await;
    assert_eq!(status, 200, "{test}");
    assert_eq!(test["delivered"], false, "{test}");
    assert!(
        test["error"]
            .as_str()
            .unwrap_or_default()
            .contains("non-public")
            || test["status"].is_null(),
        "{test}"
    );
    app.app.stop().await;
    internal.verify().await;
}

async fn redirects_from_a_webhook_target_are_not_followed(backend: &str) {
    let inner = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&inner)
        .await;
    let outer = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/internal", inner.uri())),
        )
        .expect(1)
        .mount(&outer)
        .await;
    let app = spawn_app_with(backend, |c| {
        c.egress.allow_http = true;
        c.egress.allow_private = true;
    })
    .await;
    let (status, body) = app
        .post(
            "/integrations/webhook/connect",
            json!({ "url": format!("{}/hook", outer.uri()) }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, test) = app.post("/integrations/webhook/test", json!({})).await;
    assert_eq!(status, 200, "{test}");
    assert_eq!(test["delivered"], false, "{test}");
    assert_eq!(test["status"], 307, "{test}");
    app.app.stop().await;
    inner.verify().await;
    outer.verify().await;
}

crate::both_backends!(
    webhook_targets_inside_our_network_are_refused,
    redirects_from_a_webhook_target_are_not_followed,
);
