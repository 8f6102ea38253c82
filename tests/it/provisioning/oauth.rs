//! OAuth integrations end to end: `connect` answers an authorization URL with a single-use
//! `state`; the callback exchanges the code at a local token server (wiremock) that checks
//! the exact form body; the tokens never show up in answers, the log or `outbound_requests`.

use aggregates::organization::OrganizationCommand;
use callflex::config::Secret;
use eventlog::CommandMeta;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::*;

const CLIENT_ID: &str = "hubspot-client-id";
const CLIENT_SECRET: &str = "hubspot-client-secret-value";
const ACCESS_TOKEN: &str = "CNf1-secret-access-token";
const REFRESH_TOKEN: &str = "secret-refresh-token-9";

/// Matches a form body with exactly these fields (no more, no fewer).
struct ExactForm(Vec<(&'static str, String)>);

impl wiremock::Match for ExactForm {
    fn matches(&self, request: &Request) -> bool {
        let mut got: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        let mut want: Vec<(String, String)> = self
            .0
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        got.sort();
        want.sort();
        got == want
    }
}

/// An app whose HubSpot client has credentials and a token URL on `token_server`.
async fn spawn_with_token_server(backend: &str) -> (TestApp, MockServer) {
    let server = MockServer::start().await;
    let token_url = format!("{}/oauth/v1/token", server.uri());
    let api_url = server.uri();
    let app = spawn_app_with(backend, move |c| {
        c.hubspot.client_id = Some(CLIENT_ID.into());
        c.hubspot.client_secret = Some(Secret::new(CLIENT_SECRET));
        c.hubspot.token_url = token_url;
        c.hubspot.api_url = api_url;
    })
    .await;
    (app, server)
}

/// `POST /integrations/{provider}/connect`; returns the answer and the `state` it carries.
async fn connect(app: &TestApp, provider: &str) -> (Value, String) {
    let res = app
        .client
        .post(format!(
            "{}/api/v1/integrations/{provider}/connect",
            app.base
        ))
        .json(&json!({}))
        .send()
        .await
        .expect("connect");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    let url = url::Url::parse(body["authorization_url"].as_str().expect("url")).expect("url");
    let state = url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.to_string())
        .expect("state");
    (body, state)
}

/// The callback as the user's browser calls it: no bearer token.
async fn callback(app: &TestApp, provider: &str, query: &[(&str, &str)]) -> (u16, String) {
    let res = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/integrations/{provider}/callback",
            app.base
        ))
        .query(query)
        .send()
        .await
        .expect("callback");
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

fn code_of(text: &str) -> Value {
    serde_json::from_str::<Value>(text).unwrap_or(Value::Null)["error"]["code"].clone()
}

async fn all_text(app: &TestApp, sql: &str) -> String {
    app.strings(sql).await.join("\n")
}

async fn an_oauth_callback_exchanges_the_code_once_and_never_shows_the_token(backend: &str) {
    let (app, server) = spawn_with_token_server(backend).await;
    Mock::given(method("POST"))
        .and(path("/oauth/v1/token"))
        .and(ExactForm(vec![
            ("grant_type", "authorization_code".into()),
            ("code", "auth-code-1".into()),
            (
                "redirect_uri",
                format!("{PUBLIC_URL}/api/v1/integrations/hubspot/callback"),
            ),
            ("client_id", CLIENT_ID.into()),
            ("client_secret", CLIENT_SECRET.into()),
        ]))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": ACCESS_TOKEN,
            "refresh_token": REFRESH_TOKEN,
            "expires_in": 1800,
            "token_type": "bearer",
        })))
        .expect(1)
        .mount(&server)
        .await;
    let (connected, state) = connect(&app, "hubspot").await;
    assert_eq!(connected["sandbox"], false);
    assert_eq!(
        connected["data"]["connected"], false,
        "not before the callback"
    );
    assert!(state.starts_with(&format!("{}.", app.org)), "{state}");

    let (status, text) = callback(
        &app,
        "hubspot",
        &[("code", "auth-code-1"), ("state", &state)],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["data"]["connected"], true);
    assert_eq!(body["sandbox"], false);
    assert!(!text.contains(ACCESS_TOKEN) && !text.contains(REFRESH_TOKEN));

    // The same state again: refused before the provider is asked (the mock expects 1 call).
    let (status, text) = callback(
        &app,
        "hubspot",
        &[("code", "auth-code-1"), ("state", &state)],
    )
    .await;
    assert_eq!(
        (status, code_of(&text)),
        (400, json!("invalid_state")),
        "{text}"
    );

    // The token is kept, but never in the log, the outbound record or the integration list.
    let stored = all_text(&app, "SELECT access_token FROM integration_credentials").await;
    assert_eq!(stored, ACCESS_TOKEN);
    let log = all_text(&app, "SELECT CAST(payload AS TEXT) FROM events").await;
    let outbound = all_text(
        &app,
        "SELECT body || ' ' || COALESCE(response, '') FROM outbound_requests \
         WHERE provider = 'hubspot'",
    )
    .await;
    assert!(outbound.contains("***"), "{outbound}");
    for secret in [ACCESS_TOKEN, REFRESH_TOKEN, CLIENT_SECRET, "auth-code-1"] {
        assert!(!log.contains(secret), "{secret} in the log");
        assert!(!outbound.contains(secret), "{secret} in outbound_requests");
    }
    let list = app
        .client
        .get(format!("{}/api/v1/integrations", app.base))
        .send()
        .await
        .expect("list")
        .text()
        .await
        .unwrap_or_default();
    assert!(list.contains("\"connected\":true"), "{list}");
    assert!(!list.contains(ACCESS_TOKEN), "{list}");
    assert_eq!(app.count_events("IntegrationConnected").await, 1);

    // The test is a harmless read with the stored token; a refused token says to reconnect.
    Mock::given(method("GET"))
        .and(path("/account-info/v3/details"))
        .and(wiremock::matchers::header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"portalId": 62515, "timeZone": "US/Eastern"})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/account-info/v3/details"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"status": "error"})))
        .mount(&server)
        .await;
    let test = |app: &TestApp| {
        let request = app
            .client
            .post(format!("{}/api/v1/integrations/hubspot/test", app.base))
            .json(&json!({}));
        async move {
            let res = request.send().await.expect("test");
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.expect("json")
        }
    };
    let tested = test(&app).await;
    assert_eq!(tested["delivered"], true, "{tested}");
    assert_eq!(tested["status"], 200);
    assert_eq!(tested["sandbox"], false);
    let refused = test(&app).await;
    assert_eq!(refused["delivered"], false, "{refused}");
    assert_eq!(refused["status"], 401);
    assert!(
        refused["error"].as_str().unwrap().contains("reconnect"),
        "{refused}"
    );
    let outbound = all_text(
        &app,
        "SELECT body || ' ' || COALESCE(response, '') FROM outbound_requests \
         WHERE provider = 'hubspot'",
    )
    .await;
    assert!(
        !outbound.contains(ACCESS_TOKEN) && !outbound.contains("US/Eastern"),
        "{outbound}"
    );

    // Disconnecting forgets the tokens.
    let res = app
        .client
        .delete(format!("{}/api/v1/integrations/hubspot", app.base))
        .send()
        .await
        .expect("disconnect");
    assert_eq!(res.status(), 204);
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM integration_credentials")
            .await,
        0
    );
    app.app.stop().await;
    drop(server);
}

async fn bad_expired_and_foreign_states_are_400_and_reach_no_provider(backend: &str) {
    let (app, server) = spawn_with_token_server(backend).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": "x"})))
        .expect(0)
        .mount(&server)
        .await;
    let (_, state) = connect(&app, "hubspot").await;
    for (query, code) in [
        (vec![("code", "c")], "invalid_state"),
        (vec![("code", "c"), ("state", "garbage")], "invalid_state"),
        (
            vec![("code", "c"), ("state", &format!("{}.nope", app.org))],
            "invalid_state",
        ),
        (vec![("state", state.as_str())], "invalid_input"),
    ] {
        let (status, text) = callback(&app, "hubspot", &query).await;
        assert_eq!(
            (status, code_of(&text)),
            (400, json!(code)),
            "{query:?}: {text}"
        );
    }
    // A HubSpot state does not connect Google Calendar.
    let (status, text) =
        callback(&app, "google_calendar", &[("code", "c"), ("state", &state)]).await;
    assert_eq!(
        (status, code_of(&text)),
        (400, json!("invalid_state")),
        "{text}"
    );
    // A webhook integration has no callback.
    let (status, _) = callback(&app, "webhook", &[("code", "c"), ("state", &state)]).await;
    assert_eq!(status, 404);
    // The user refused at the provider: the state is used up, nothing is exchanged.
    let (status, text) = callback(
        &app,
        "hubspot",
        &[("error", "access_denied"), ("state", &state)],
    )
    .await;
    assert_eq!(
        (status, code_of(&text)),
        (400, json!("authorization_denied")),
        "{text}"
    );

    // A state issued 11 minutes ago has expired.
    let expired = format!("{}.{}", app.org, "e".repeat(64));
    app.app
        .state()
        .organizations
        .execute(
            &app.org.to_string(),
            OrganizationCommand::StartIntegrationAuthorization {
                provider: "hubspot".into(),
                state_hash: callflex::auth::token_hash(&expired),
                expires_at: chrono::Utc::now() - chrono::TimeDelta::minutes(1),
                actor: format!("user:{}", app.user_id),
            },
            &CommandMeta::new("system:test").tenant(app.org),
        )
        .await
        .expect("state recorded");
    let (status, text) = callback(&app, "hubspot", &[("code", "c"), ("state", &expired)]).await;
    assert_eq!(
        (status, code_of(&text)),
        (400, json!("expired_state")),
        "{text}"
    );
    app.app.stop().await;
    drop(server);
}

async fn a_refused_code_exchange_answers_502_and_connects_nothing(backend: &str) {
    let (app, server) = spawn_with_token_server(backend).await;
    Mock::given(method("POST"))
        .and(path("/oauth/v1/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "status": "BAD_AUTH_CODE", "message": "missing or unknown auth code"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let (_, state) = connect(&app, "hubspot").await;
    let (status, text) = callback(&app, "hubspot", &[("code", "stale"), ("state", &state)]).await;
    assert_eq!(
        (status, code_of(&text)),
        (502, json!("provider_rejected")),
        "{text}"
    );
    assert_eq!(app.count_events("IntegrationConnected").await, 0);
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM integration_credentials")
            .await,
        0
    );
    let list: Value = app
        .client
        .get(format!("{}/api/v1/integrations", app.base))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let hubspot = list["data"]
        .as_array()
        .and_then(|l| l.iter().find(|i| i["provider"] == "hubspot"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(hubspot["connected"], false, "{list}");
    app.app.stop().await;
    drop(server);
}

async fn without_client_credentials_oauth_says_it_runs_in_sandbox(backend: &str) {
    let app = spawn_app(backend).await;
    let (connected, state) = connect(&app, "google_calendar").await;
    assert_eq!(connected["sandbox"], true);
    let (status, text) = callback(
        &app,
        "google_calendar",
        &[("code", "c-1"), ("state", &state)],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["sandbox"], true);
    assert_eq!(body["data"]["connected"], true);
    assert_eq!(body["data"]["config"]["sandbox"], true);
    // A sandbox token's test read is recorded, not sent.
    let tested: Value = app
        .client
        .post(format!(
            "{}/api/v1/integrations/google_calendar/test",
            app.base
        ))
        .json(&json!({}))
        .send()
        .await
        .expect("test")
        .json()
        .await
        .expect("json");
    assert_eq!(tested, json!({"delivered": true, "sandbox": true}));
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM outbound_requests \
             WHERE provider = 'google_calendar' AND sandbox = 1"
        )
        .await,
        2,
        "the code exchange and the test read"
    );
    let health: Value = reqwest::get(format!("{}/health", app.ops))
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert!(
        health["providers"]
            .as_array()
            .is_some_and(|p| p
                .contains(&json!({"name": "google_calendar", "sandbox": true, "mode": "sandbox"}))),
        "{health}"
    );
    app.app.stop().await;
}

crate::both_backends!(
    an_oauth_callback_exchanges_the_code_once_and_never_shows_the_token,
    bad_expired_and_foreign_states_are_400_and_reach_no_provider,
    a_refused_code_exchange_answers_502_and_connects_nothing,
    without_client_credentials_oauth_says_it_runs_in_sandbox,
);
