//! `spawn_app`: the real service on a fresh database and a random port.

use std::time::Duration;

use aggregates::organization::{OrganizationCommand, OrganizationSettings, TransferNumbers};
use callflex::config::{Config, Secret};
use callflex::startup::Application;
use eventlog::CommandMeta;
use sqlx::Row;
use uuid::Uuid;

pub const VAPI_SECRET: &str = "vapi-test-secret";
pub const TWILIO_TOKEN: &str = "12345";
pub const STRIPE_SECRET: &str = "whsec_test_secret";
pub const PUBLIC_URL: &str = "https://callflex.test";

pub struct TestApp {
    pub app: Application,
    pub base: String,
    /// The operator port: `/health` in detail, `/metrics`.
    pub ops: String,
    /// Sends the owner's session token (`Authorization: Bearer ...`) with every request.
    pub client: reqwest::Client,
    pub org: Uuid,
    /// The owner's session token and user id.
    pub token: String,
    pub user_id: String,
}

/// Instantiates each listed scenario once per backend.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name("postgres").await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name("sqlite").await;
                }
            )*
        }
    };
}

pub fn fixture(path: &str) -> String {
    let full = format!("{}/wire/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("fixture {full}: {e}"))
}

pub async fn spawn_app(backend: &str) -> TestApp {
    spawn_app_configured(backend, |_| {}).await
}

/// [`spawn_app`] without the processes: for scenarios that assert the log's exact contents
/// (a redelivery records nothing new) or write the processes' events themselves (seeded
/// analyses), which the post-call processing would race.
pub async fn spawn_quiet_app(backend: &str) -> TestApp {
    spawn_app_configured(backend, |c| c.processes_enabled = false).await
}

async fn spawn_app_configured(backend: &str, configure: impl FnOnce(&mut Config)) -> TestApp {
    let app = spawn_app_with(backend, configure).await;
    let org = app.org;
    app.app
        .state()
        .organizations
        .execute(
            &org.to_string(),
            OrganizationCommand::UpdateSettings {
                settings: OrganizationSettings {
                    transfer_numbers: TransferNumbers {
                        dispatch: Some("+15550002222".into()),
                        ..Default::default()
                    },
                    notifications: aggregates::organization::NotificationSettings {
                        sms_enabled: true,
                        sms_numbers: vec!["+15550001111".into()],
                        ..Default::default()
                    },
                    ..Default::default()
                },
                actor: "system:test".into(),
            },
            &CommandMeta::new("system:test").tenant(org),
        )
        .await
        .expect("settings");
    app
}

/// The password every test account signs up with.
pub const PASSWORD: &str = "correct horse battery 9";

/// Signs up `email` over HTTP (with an organization when `organization` is given), takes the
/// verification token from the (sandboxed) email and verifies the address; returns the
/// verification answer (`token`, `user.id`, `organization.id`, ...).
pub async fn sign_up(
    app: &Application,
    email: &str,
    organization: Option<&str>,
) -> serde_json::Value {
    let base = format!("http://127.0.0.1:{}", app.port());
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&serde_json::json!({
            "email": email,
            "password": PASSWORD,
            "name": "Test Owner",
            "organization_name": organization,
        }))
        .send()
        .await
        .expect("signup request");
    let status = res.status();
    let body: serde_json::Value = res.json().await.expect("signup answer");
    assert_eq!(status, 202, "signup refused: {body}");
    let token = token_from_email(app, email, "Verification token: ").await;
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/verify-email"))
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .expect("verify request");
    let status = res.status();
    let body: serde_json::Value = res.json().await.expect("verify answer");
    assert_eq!(status, 200, "verification refused: {body}");
    body
}

/// The emails (sandboxed Resend requests) sent to `email`, oldest first, as JSON. With a live
/// Resend (a local stub) the bodies are what the stub received (the service keeps only the
/// envelope of a real email).
pub async fn emails_to(app: &Application, email: &str) -> Vec<serde_json::Value> {
    let resend = &app.state().config.resend;
    if resend.api_key.is_some() {
        return crate::stubs::emails_received(&resend.base_url)
            .into_iter()
            .filter(|m| m["to"][0] == email)
            .collect();
    }
    let rows = sqlx::query(
        "SELECT body FROM outbound_requests WHERE provider = 'resend' ORDER BY created_at, id",
    )
    .fetch_all(app.state().store.pool())
    .await
    .expect("emails");
    rows.iter()
        .filter_map(|r| r.try_get::<String, _>(0).ok())
        .filter_map(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
        .filter(|m| m["to"][0] == email)
        .collect()
}

/// The token after `marker` in the latest email to `email` that has one (waits for it: the
/// emails go out in the background).
pub async fn token_from_email(app: &Application, email: &str, marker: &str) -> String {
    for _ in 0..200 {
        let token = emails_to(app, email).await.iter().rev().find_map(|m| {
            let text = m["text"].as_str()?;
            let rest = text.split(marker).nth(1)?;
            rest.split_whitespace().next().map(str::to_string)
        });
        if let Some(token) = token {
            return token;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no email with `{marker}` for {email}");
}

/// A client that sends `Authorization: Bearer <token>` with every request.
pub fn authed_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .expect("token is a header value");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

impl TestApp {
    /// `GET /health` on the operator port, as JSON.
    pub async fn operator_health(&self) -> serde_json::Value {
        reqwest::get(format!("{}/health", self.ops))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Invites `email` with `role` (as the owner), signs the address up and accepts; returns
    /// a client for the new member.
    pub async fn join_as(&self, email: &str, role: &str) -> reqwest::Client {
        let members = format!("{}/api/v1/organizations/{}/members", self.base, self.org);
        let res = self
            .client
            .post(&members)
            .json(&serde_json::json!({ "email": email, "role": role }))
            .send()
            .await
            .expect("invite");
        assert_eq!(res.status(), 201, "invite {email}");
        let signed_up = sign_up(&self.app, email, None).await;
        let client = authed_client(signed_up["token"].as_str().expect("token"));
        let res = client
            .post(format!("{members}/accept"))
            .send()
            .await
            .expect("accept");
        assert_eq!(res.status(), 200, "accept {email}");
        client
    }

    /// An API key of the organization with these scopes (created by the owner); returns a
    /// client that sends it.
    pub async fn key_client(&self, scopes: &[&str]) -> reqwest::Client {
        let res = self
            .client
            .post(format!(
                "{}/api/v1/organizations/{}/api-keys",
                self.base, self.org
            ))
            .json(&serde_json::json!({ "name": "test key", "scopes": scopes }))
            .send()
            .await
            .expect("create key");
        assert_eq!(res.status(), 201, "create key");
        let body: serde_json::Value = res.json().await.expect("key answer");
        authed_client(body["secret"].as_str().expect("secret"))
    }

    /// Opens a session for the owner that expired a second ago (straight on the aggregate)
    /// and waits until the read models know it.
    pub async fn expired_session(&self, token: &str) {
        let state = self.app.state();
        let done = state
            .users
            .execute(
                &self.user_id,
                aggregates::user::UserCommand::SignIn {
                    session_id: format!("expired-{}", Uuid::new_v4()),
                    token_hash: callflex::auth::token_hash(token),
                    expires_at: chrono::Utc::now() - chrono::TimeDelta::seconds(1),
                },
                &CommandMeta::new("system:test"),
            )
            .await
            .expect("session");
        let caught_up = state
            .wait_for_position(done.result.last_position, Duration::from_secs(10))
            .await
            .expect("caught up");
        assert!(caught_up, "read models caught up");
    }

    /// Posts JSON as the owner; returns the status and the JSON answer.
    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Patches JSON as the owner; returns the status and the JSON answer.
    pub async fn patch_json(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let res = self
            .client
            .patch(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn post_vapi(&self, body: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/api/webhooks/vapi/{}", self.base, self.org))
            .header("content-type", "application/json")
            .header("x-vapi-secret", VAPI_SECRET)
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    /// Posts and expects 200; returns the JSON answer.
    pub async fn vapi_ok(&self, body: &str) -> serde_json::Value {
        let res = self.post_vapi(body).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, 200, "VAPI delivery refused: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Waits until every read model has applied the whole log.
    pub async fn settle(&self) {
        let state = self.app.state();
        state.ledger.flush().await;
        let head = state.store.head().await.unwrap();
        let caught_up = state
            .wait_for_position(head, Duration::from_secs(20))
            .await
            .unwrap();
        let statuses: Vec<_> = state
            .projectors
            .iter()
            .map(|p| (p.name(), p.status()))
            .collect();
        assert!(caught_up, "projectors did not catch up: {statuses:?}");
    }

    /// Waits until the processes' starters have read the whole log and no instance is still
    /// running or waiting for a retry.
    pub async fn processes_done(&self) {
        let state = self.app.state();
        for _ in 0..1200 {
            if state.processes_idle().await.unwrap() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let open = self
            .strings(
                "SELECT kind || ' ' || subject || ' ' || status || ' due ' || \
                 COALESCE(CAST(due_at AS TEXT), '-') || ' ' || COALESCE(last_error, '') \
                 FROM process_work WHERE status NOT IN ('completed', 'failed')",
            )
            .await;
        let head = state.store.head().await.unwrap();
        let starters: Vec<_> = state
            .processes_running
            .get()
            .into_iter()
            .flatten()
            .map(|p| (p.kind, p.starter.status(), p.status()))
            .collect();
        panic!("the processes did not finish: head {head}, starters {starters:?}, open {open:?}");
    }

    /// Every process instance's timer row says what its stream says: a `pending` or `queued`
    /// instance has an empty stream (its worker skips reading it), any other stands as the
    /// state its events fold to (the timer rides on the instance's own appends).
    pub async fn assert_timers_match_streams(&self) {
        use aggregates::process::Process;
        use callflex::processes::work::Timer;
        let state = self.app.state();
        let rows = sqlx::query(
            "SELECT kind, subject, status, due_at, attempts FROM process_work ORDER BY kind, subject",
        )
        .fetch_all(state.store.pool())
        .await
        .unwrap();
        assert!(!rows.is_empty(), "no process instance to check");
        for row in rows {
            let kind: String = row.try_get(0).unwrap();
            let subject: String = row.try_get(1).unwrap();
            let status: String = row.try_get(2).unwrap();
            let due_at: Option<i64> = row.try_get(3).unwrap();
            let attempts: i64 = row.try_get(4).unwrap();
            let (process, version) = state
                .processes
                .replay(&Process::stream_id(&kind, &subject))
                .await
                .unwrap();
            if matches!(status.as_str(), "pending" | "queued") {
                assert_eq!(version, 0, "{kind} {subject} is {status} with events");
                continue;
            }
            let timer = Timer::of(&process, state.clock.now());
            assert_eq!(status, timer.standing.as_str(), "{kind} {subject}");
            assert_eq!(attempts, timer.attempts, "{kind} {subject}");
            if status == "retrying" || timer.due_at.is_none() {
                assert_eq!(due_at, timer.due_at, "{kind} {subject}");
            }
        }
    }

    pub async fn head(&self) -> i64 {
        self.app.state().store.head().await.unwrap()
    }

    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        sqlx::query(sql)
            .fetch_one(self.app.state().store.pool())
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap()
    }

    /// How many events of this type the log holds.
    pub async fn count_events(&self, event_type: &str) -> i64 {
        let sql = "SELECT COUNT(*) FROM events WHERE event_type = $1";
        sqlx::query(sql)
            .bind(event_type.to_string())
            .fetch_one(self.app.state().store.pool())
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap()
    }

    pub async fn strings(&self, sql: &str) -> Vec<String> {
        sqlx::query(sql)
            .fetch_all(self.app.state().store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| {
                r.try_get::<Option<String>, _>(0)
                    .unwrap()
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// A VAPI server message in the current envelope shape.
pub fn vapi_message(kind: &str, call_id: &str, extra: serde_json::Value) -> String {
    let mut message = serde_json::json!({
        "type": kind,
        "timestamp": 1_721_000_000_000i64,
        "call": {
            "id": call_id,
            "type": "inboundPhoneCall",
            "customer": { "number": "+15551230000" },
            "phoneCallProviderId": format!("CA{call_id}"),
        },
        "phoneNumber": { "number": "+15559990000" },
    });
    if let (Some(m), Some(e)) = (message.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    serde_json::json!({ "message": message }).to_string()
}

/// Like [`spawn_app`] (same defaults, one organization), with `configure` applied to the
/// configuration first (e.g. provider base URLs and keys pointing at local mock servers).
///
/// The organization is created the way a customer creates it: `owner@acme.test` signs up
/// with it over HTTP; `client` sends that owner's session token with every request.
pub async fn spawn_app_with(backend: &str, configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config {
        database_url: eventlog::testing::fresh_url(backend).await,
        database_max_connections: 10,
        listen: "127.0.0.1:0".parse().unwrap(),
        operator_listen: Some("127.0.0.1:0".parse().unwrap()),
        public_url: PUBLIC_URL.into(),
        vapi_webhook_secret: Some(Secret::new(VAPI_SECRET)),
        twilio_auth_token: Some(Secret::new(TWILIO_TOKEN)),
        stripe_webhook_secret: Some(Secret::new(STRIPE_SECRET)),
        ..Config::default()
    };
    configure(&mut config);
    let app = Application::build(config).await.expect("app starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let ops = format!(
        "http://127.0.0.1:{}",
        app.operator_port().expect("operator port")
    );
    let signed_up = sign_up(&app, "owner@acme.test", Some("Acme Trucking")).await;
    let org = signed_up["organization"]["id"]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
        .expect("organization id");
    let token = signed_up["token"].as_str().expect("token").to_string();
    let user_id = signed_up["user"]["id"]
        .as_str()
        .expect("user id")
        .to_string();
    TestApp {
        app,
        base,
        ops,
        client: authed_client(&token),
        org,
        token,
        user_id,
    }
}
