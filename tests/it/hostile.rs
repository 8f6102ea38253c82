//! Hostile input at the edge: control characters (U+0000 above all, which PostgreSQL text
//! cannot hold) in identifiers, queries and provider ids are refused with the parameter
//! named, never a 500; over-long searches are a 400.

use serde_json::{json, Value};

use crate::helpers::*;

async fn status_and_body(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn control_characters_in_identifiers_are_refused_naming_the_parameter(backend: &str) {
    let app = spawn_app(backend).await;
    let anonymous = reqwest::Client::new();
    let cases: Vec<(reqwest::RequestBuilder, &str)> = vec![
        (
            anonymous
                .post(format!("{}/api/v1/auth/signin", app.base))
                .json(&json!({"email": "owner\u{0}@acme.test", "password": PASSWORD})),
            "email",
        ),
        (
            anonymous
                .post(format!("{}/api/v1/auth/signup", app.base))
                .json(&json!({"email": "new\u{0}@acme.test", "password": PASSWORD, "name": "N"})),
            "email",
        ),
        (
            anonymous
                .post(format!("{}/api/v1/auth/forgot-password", app.base))
                .json(&json!({"email": "x\u{1}@acme.test"})),
            "email",
        ),
        (
            app.client
                .post(format!("{}/api/v1/contacts", app.base))
                .json(&json!({"phone_number": "+1555\u{0}0001111", "name": "Nul"})),
            "phone_number",
        ),
        (
            app.client
                .get(format!("{}/api/v1/contacts?q=a%00b", app.base)),
            "q",
        ),
        (
            app.client
                .get(format!("{}/api/v1/calls/search?q=x%00", app.base)),
            "q",
        ),
    ];
    for (request, parameter) in cases {
        let (status, body) = status_and_body(request.send().await.expect("request")).await;
        assert!(
            status == 400 || status == 422,
            "{parameter}: answered {status} {body}"
        );
        assert_eq!(body["error"]["details"]["parameter"], parameter, "{body}");
    }
    // Free text keeps its NUL as U+FFFD; the contact is created.
    let res = app
        .client
        .post(format!("{}/api/v1/contacts", app.base))
        .json(&json!({"phone_number": "+15550007777", "notes": "gate\u{0}code"}))
        .send()
        .await
        .expect("create");
    let (status, body) = status_and_body(res).await;
    assert_eq!(status, 201, "{body}");
    assert!(body.to_string().contains("gate\u{FFFD}code"), "{body}");
    // A search longer than any real one is a 400, not a database error.
    let long = "a".repeat(50_000);
    let res = app
        .client
        .get(format!("{}/api/v1/contacts?q={long}", app.base))
        .send()
        .await
        .expect("search");
    let (status, body) = status_and_body(res).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"]["parameter"], "q");
    // A Stripe event id with a NUL is a 400 (no event can be keyed on it).
    let payload = json!({"id": "evt_\u{0}1", "type": "invoice.paid", "object": "event",
                         "data": {"object": {"id": "in_1", "object": "invoice"}}})
    .to_string();
    let header = wire::signature::stripe_signature_header(
        STRIPE_SECRET,
        chrono::Utc::now().timestamp(),
        payload.as_bytes(),
    );
    let res = reqwest::Client::new()
        .post(format!("{}/api/webhooks/stripe", app.base))
        .header("content-type", "application/json")
        .header("stripe-signature", header)
        .body(payload)
        .send()
        .await
        .expect("stripe");
    assert_eq!(res.status(), 400);
    app.app.stop().await;
}

crate::both_backends!(control_characters_in_identifiers_are_refused_naming_the_parameter);
