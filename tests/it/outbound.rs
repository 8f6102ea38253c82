//! Outbound provider client: real HTTP against a local server that checks what was sent.

use callflex::config::{ProviderConfig, Secret};
use callflex::providers::resend::{Email, Resend};
use sqlx::Row;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn email() -> Email {
    Email {
        from: "CallFlex <notifications@callflex.test>".into(),
        to: vec!["owner@acme.test".into()],
        subject: "Reset your password".into(),
        text: "https://app.callflex.test/reset?token=SECRET-TOKEN".into(),
        html: None,
        idempotency_key: Some("reset-1".into()),
    }
}

async fn an_email_is_retried_on_a_5xx_and_its_secret_body_is_not_kept(backend: &str) {
    let store = eventlog::EventStore::open(&eventlog::testing::fresh_url(backend).await, 5)
        .await
        .unwrap();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(header("authorization", "Bearer re_test"))
        .and(header("idempotency-key", "reset-1"))
        .and(body_partial_json(serde_json::json!({
            "to": ["owner@acme.test"],
            "subject": "Reset your password",
            "text": "https://app.callflex.test/reset?token=SECRET-TOKEN",
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": "em_1"})))
        .expect(1)
        .mount(&server)
        .await;
    let config = ProviderConfig {
        base_url: server.uri(),
        api_key: Some(Secret::new("re_test")),
    };
    let resend = Resend::new(config, store.clone());
    assert_eq!(resend.send(&email()).await.unwrap(), "em_1");
    let row = sqlx::query("SELECT body, attempts, status, sandbox FROM outbound_requests")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let body: String = row.try_get(0).unwrap();
    assert!(
        !body.contains("SECRET-TOKEN"),
        "recorded body is redacted: {body}"
    );
    assert_eq!(row.try_get::<i64, _>(1).unwrap(), 2);
    assert_eq!(row.try_get::<Option<i64>, _>(2).unwrap(), Some(200));
    assert_eq!(row.try_get::<i64, _>(3).unwrap(), 0);
}

async fn a_refused_email_is_an_error_and_is_not_retried(backend: &str) {
    let store = eventlog::EventStore::open(&eventlog::testing::fresh_url(backend).await, 5)
        .await
        .unwrap();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(422).set_body_json(serde_json::json!({"message": "bad to"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let config = ProviderConfig {
        base_url: server.uri(),
        api_key: Some(Secret::new("re_test")),
    };
    let err = Resend::new(config, store).send(&email()).await.unwrap_err();
    assert!(err.to_string().contains("422"), "{err}");
}

crate::both_backends!(
    an_email_is_retried_on_a_5xx_and_its_secret_body_is_not_kept,
    a_refused_email_is_an_error_and_is_not_retried,
);
