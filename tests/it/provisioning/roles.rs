//! Who may do what on the provisioning routes, and what bad input gets: viewers, members and
//! read-only API keys are refused admin commands (403, the shared error shape) and nothing is
//! recorded or sent; malformed bodies, unknown ids, another organization's ids and expired
//! tokens get the documented errors.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

async fn send(
    client: &reqwest::Client,
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method, format!("{}/api/v1{path}", app.base));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A raw (possibly malformed) JSON body.
async fn send_raw(app: &TestApp, method: Method, path: &str, body: &str) -> (u16, Value) {
    let res = app
        .client
        .request(method, format!("{}/api/v1{path}", app.base))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn assert_error(status: u16, body: &Value, want: u16, code: &str, what: &str) {
    assert_eq!(status, want, "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(body["error"]["message"].is_string(), "{what}: {body}");
}

/// In sandbox mode: a synced assistant, a bought number and a connected webhook integration.
async fn provisioned(app: &TestApp) -> (String, String) {
    let assistant = app.create_trucking_assistant().await;
    let (status, _) = app
        .post(&format!("/assistants/{assistant}/sync"), json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, bought) = app
        .post(
            "/phone-numbers",
            json!({"area_code": "415", "assistant_id": assistant}),
        )
        .await;
    assert_eq!(status, 201, "{bought}");
    let (status, _) = app
        .post(
            "/integrations/webhook/connect",
            json!({"url": "https://hooks.example.test/in"}),
        )
        .await;
    assert_eq!(status, 200);
    (
        assistant,
        bought["data"]["id"].as_str().unwrap_or_default().into(),
    )
}

async fn viewers_members_and_read_keys_are_refused_admin_commands(backend: &str) {
    let app = spawn_app(backend).await;
    let (assistant, number) = provisioned(&app).await;
    let viewer = app.join_as("vera@acme.test", "viewer").await;
    let member = app.join_as("moe@acme.test", "member").await;
    let read_key = app.key_client(&["read"]).await;
    let head = app.head().await;

    let admin_only = [
        (
            Method::POST,
            "/phone-numbers/search".to_string(),
            json!({"area_code": "415"}),
        ),
        (
            Method::POST,
            "/phone-numbers".into(),
            json!({"area_code": "415"}),
        ),
        (
            Method::PATCH,
            format!("/phone-numbers/{number}"),
            json!({"friendly_name": "x"}),
        ),
        (
            Method::DELETE,
            format!("/phone-numbers/{number}"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/phone-numbers/{number}/test"),
            json!({}),
        ),
        (
            Method::POST,
            "/integrations/zapier/connect".into(),
            json!({"url": "https://hooks.example.test/z"}),
        ),
        (
            Method::POST,
            "/integrations/hubspot/connect".into(),
            json!({}),
        ),
        (
            Method::PATCH,
            "/integrations/webhook".into(),
            json!({"event_types": []}),
        ),
        (Method::DELETE, "/integrations/webhook".into(), json!({})),
        (Method::POST, "/integrations/webhook/test".into(), json!({})),
    ];
    let assistant_writes = [
        (
            Method::POST,
            "/assistants".to_string(),
            json!({"name": "x", "system_prompt": "Hi"}),
        ),
        (
            Method::PATCH,
            format!("/assistants/{assistant}"),
            json!({"name": "Renamed"}),
        ),
        (
            Method::POST,
            format!("/assistants/{assistant}/sync"),
            json!({}),
        ),
        (
            Method::DELETE,
            format!("/assistants/{assistant}"),
            json!({}),
        ),
    ];
    for (who, client) in [
        ("viewer", &viewer),
        ("member", &member),
        ("read key", &read_key),
    ] {
        for (method, path, body) in &admin_only {
            let (status, err) = send(client, &app, method.clone(), path, Some(body.clone())).await;
            assert_error(
                status,
                &err,
                403,
                "forbidden",
                &format!("{who} {method} {path}"),
            );
        }
        // Reading is fine for everyone.
        for path in ["/phone-numbers", "/integrations", "/assistants"] {
            let (status, body) = send(client, &app, Method::GET, path, None).await;
            assert_eq!(status, 200, "{who} GET {path}: {body}");
        }
    }
    // Assistants: members may change them, viewers and read keys may not.
    for (who, client) in [("viewer", &viewer), ("read key", &read_key)] {
        for (method, path, body) in &assistant_writes {
            let (status, err) = send(client, &app, method.clone(), path, Some(body.clone())).await;
            assert_error(
                status,
                &err,
                403,
                "forbidden",
                &format!("{who} {method} {path}"),
            );
        }
    }
    assert_eq!(app.head().await, head, "no refused command wrote anything");
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM outbound_requests WHERE method = 'DELETE'")
            .await,
        0,
        "no refused command reached a provider"
    );
    let (status, body) = send(
        &member,
        &app,
        Method::PATCH,
        &format!("/assistants/{assistant}"),
        Some(json!({"name": "Renamed by a member"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A write-scoped key does what an admin does on these routes.
    let write_key = app.key_client(&["write"]).await;
    let (status, body) = send(
        &write_key,
        &app,
        Method::POST,
        "/phone-numbers/search",
        Some(json!({"area_code": "415"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    app.app.stop().await;
}

async fn phone_number_and_integration_routes_answer_bad_input_as_documented(backend: &str) {
    let app = spawn_app(backend).await;
    let (_, number) = provisioned(&app).await;

    // Missing fields and wrong types: 400 before anything runs; bad values: 422 naming them.
    // (poem-openapi reads a JSON number or boolean given for a string field as its text, so
    // `"area_code": 415` is the value "415"; arrays and objects are wrong types.)
    let cases = [
        (Method::POST, "/phone-numbers/search", "{}", 400, None),
        (
            Method::POST,
            "/phone-numbers/search",
            r#"{"area_code": ["415"]}"#,
            400,
            None,
        ),
        (
            Method::POST,
            "/phone-numbers/search",
            r#"{"area_code": "41"}"#,
            422,
            Some("area_code"),
        ),
        (
            Method::POST,
            "/phone-numbers/search",
            r#"{"area_code": "415", "limit": 99}"#,
            422,
            Some("limit"),
        ),
        (Method::POST, "/phone-numbers/search", "not json", 400, None),
        (
            Method::POST,
            "/phone-numbers/search",
            r#"{"area_code": "415", "limit": "many"}"#,
            400,
            None,
        ),
        (Method::POST, "/phone-numbers", "{}", 422, Some("area_code")),
        (
            Method::POST,
            "/phone-numbers",
            r#"{"phone_number": {"n": 1}}"#,
            400,
            None,
        ),
        (
            Method::POST,
            "/phone-numbers",
            r#"{"phone_number": "555"}"#,
            422,
            Some("phone_number"),
        ),
        (
            Method::POST,
            "/integrations/webhook/connect",
            "{}",
            422,
            Some("url"),
        ),
        (
            Method::POST,
            "/integrations/webhook/connect",
            r#"{"url": [5]}"#,
            400,
            None,
        ),
        (
            Method::POST,
            "/integrations/webhook/connect",
            r#"{"url": "ftp://files.example.test"}"#,
            422,
            Some("url"),
        ),
        (
            Method::PATCH,
            "/integrations/webhook",
            r#"{"event_types": "calls"}"#,
            400,
            None,
        ),
    ];
    for (method, path, body, want, field) in cases {
        let (status, err) = send_raw(&app, method.clone(), path, body).await;
        assert_eq!(status, want, "{method} {path} {body}: {err}");
        assert!(
            err["error"]["code"].is_string(),
            "{method} {path} {body}: {err}"
        );
        if let Some(field) = field {
            assert_eq!(
                err["error"]["details"]["field"], field,
                "{path} {body}: {err}"
            );
        }
    }
    let (status, err) = send_raw(
        &app,
        Method::PATCH,
        &format!("/phone-numbers/{number}"),
        r#"{"friendly_name": [7]}"#,
    )
    .await;
    assert_eq!(status, 400, "{err}");

    // Unknown ids and providers.
    let not_found = [
        (Method::GET, "/phone-numbers/nope", "phone_number_not_found"),
        (
            Method::PATCH,
            "/phone-numbers/nope",
            "phone_number_not_found",
        ),
        (
            Method::DELETE,
            "/phone-numbers/nope",
            "phone_number_not_found",
        ),
        (
            Method::POST,
            "/phone-numbers/nope/test",
            "phone_number_not_found",
        ),
        (
            Method::POST,
            "/integrations/fax/connect",
            "unknown_integration",
        ),
        (Method::PATCH, "/integrations/fax", "unknown_integration"),
        (Method::DELETE, "/integrations/fax", "unknown_integration"),
        (
            Method::POST,
            "/integrations/fax/test",
            "unknown_integration",
        ),
        (
            Method::PATCH,
            "/integrations/zapier",
            "integration_not_found",
        ),
        (
            Method::DELETE,
            "/integrations/zapier",
            "integration_not_found",
        ),
        (
            Method::POST,
            "/integrations/zapier/test",
            "integration_not_found",
        ),
    ];
    for (method, path, code) in not_found {
        let (status, err) = send(&app.client, &app, method.clone(), path, Some(json!({}))).await;
        assert_error(status, &err, 404, code, &format!("{method} {path}"));
    }
    let (status, err) = app
        .post(
            "/phone-numbers",
            json!({"phone_number": "+14155550100", "assistant_id": "nope"}),
        )
        .await;
    assert_error(
        status,
        &err,
        404,
        "assistant_not_found",
        "unknown assistant",
    );

    // Another organization's number is not found, even by its id; B's organization header
    // does not open B's numbers to A.
    let other = sign_up(&app.app, "bea@other.test", Some("Other Co")).await;
    let b = authed_client(other["token"].as_str().unwrap_or_default());
    let b_org = other["organization"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (status, b_number) = send(
        &b,
        &app,
        Method::POST,
        "/phone-numbers",
        Some(json!({"area_code": "212"})),
    )
    .await;
    assert_eq!(status, 201, "{b_number}");
    let b_id = b_number["data"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for (method, path) in [
        (Method::GET, format!("/phone-numbers/{b_id}")),
        (Method::PATCH, format!("/phone-numbers/{b_id}")),
        (Method::DELETE, format!("/phone-numbers/{b_id}")),
        (Method::POST, format!("/phone-numbers/{b_id}/test")),
    ] {
        let (status, err) = send(&app.client, &app, method.clone(), &path, Some(json!({}))).await;
        assert_error(
            status,
            &err,
            404,
            "phone_number_not_found",
            &format!("A {method} {path}"),
        );
    }
    for path in ["/phone-numbers", "/integrations"] {
        let res = app
            .client
            .get(format!("{}/api/v1{path}", app.base))
            .header("X-Organization-Id", &b_org)
            .send()
            .await
            .expect("request");
        assert_eq!(
            res.status(),
            404,
            "A with B's organization header on {path}"
        );
    }

    // An expired session answers 401 on these routes too.
    let token = "expired-provisioning-token-expired-provisioning";
    app.expired_session(token).await;
    let expired = authed_client(token);
    for (method, path) in [
        (Method::GET, "/phone-numbers".to_string()),
        (Method::POST, "/phone-numbers".into()),
        (Method::DELETE, format!("/phone-numbers/{number}")),
        (Method::GET, "/integrations".into()),
        (Method::POST, "/integrations/webhook/connect".into()),
        (Method::DELETE, "/integrations/webhook".into()),
    ] {
        let (status, err) = send(
            &expired,
            &app,
            method.clone(),
            &path,
            Some(json!({"area_code": "415"})),
        )
        .await;
        assert_error(
            status,
            &err,
            401,
            "invalid_token",
            &format!("expired {method} {path}"),
        );
    }
    app.app.stop().await;
}

crate::both_backends!(
    viewers_members_and_read_keys_are_refused_admin_commands,
    phone_number_and_integration_routes_answer_bad_input_as_documented,
);
