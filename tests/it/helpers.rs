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
    pub client: reqwest::Client,
    pub org: Uuid,
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
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("fixture {full}: {e}"))
}

pub async fn spawn_app(backend: &str) -> TestApp {
    let config = Config {
        database_url: eventlog::testing::fresh_url(backend).await,
        database_max_connections: 10,
        listen: "127.0.0.1:0".parse().unwrap(),
        public_url: PUBLIC_URL.into(),
        vapi_webhook_secret: Some(Secret::new(VAPI_SECRET)),
        twilio_auth_token: Some(Secret::new(TWILIO_TOKEN)),
        stripe_webhook_secret: Some(Secret::new(STRIPE_SECRET)),
        ..Config::default()
    };
    let app = Application::build(config).await.expect("app starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let org = Uuid::new_v4();
    let state = app.state().clone();
    state
        .organizations
        .execute(
            &org.to_string(),
            OrganizationCommand::Create {
                id: org,
                name: "Acme Trucking".into(),
                owner_user_id: "u1".into(),
                owner_email: "owner@acme.test".into(),
                actor: "system:test".into(),
            },
            &CommandMeta::new("system:test").tenant(org),
        )
        .await
        .expect("org created");
    state
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
    TestApp {
        app,
        base,
        client: reqwest::Client::new(),
        org,
    }
}

impl TestApp {
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
