//! Raw deliveries for auditors: the list of deliveries that built a call, and
//! `callflex redeliver` replaying them through the ingest path: into the same store nothing
//! new is recorded; into a fresh store the same read models are rebuilt.

use serde_json::{json, Value};

use callflex::cli::RedeliverArgs;

use crate::helpers::*;
use crate::overlap::read_models;
use crate::webhooks::realistic_call;

fn args() -> RedeliverArgs {
    RedeliverArgs {
        call: None,
        from: None,
        to: None,
        organization: None,
        into: None,
    }
}

async fn stored_deliveries_rebuild_the_same_call_in_a_fresh_store_and_nothing_in_the_same(
    backend: &str,
) {
    let app = spawn_app_with(backend, |c| c.processes_enabled = false).await;
    let (status, key) = app
        .post_json(
            &format!("/api/v1/organizations/{}/api-keys", app.org),
            json!({"name": "auditor's key", "scopes": ["read"]}),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let api_key = key["secret"].as_str().unwrap().to_string();
    let started = chrono::Utc::now();
    let deliveries = realistic_call("replayed");
    for body in &deliveries {
        app.vapi_ok(body).await;
    }
    app.vapi_ok(&deliveries[0]).await; // an exact redelivery: one ledger row
    app.settle().await;
    let call = callflex::webhooks::vapi::call_id(app.org, "replayed");
    let expected = read_models(&app, "replayed").await;

    // The deliveries that built the call, in order, with our answers and raw bodies.
    let url = format!("{}/api/v1/audit/call/{call}/deliveries", app.base);
    let listed: Value = app
        .client
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = listed["data"].as_array().unwrap().clone();
    assert_eq!(listed.len(), deliveries.len(), "{listed:?}");
    assert_eq!(listed[0]["provider"], "vapi");
    assert_eq!(listed[0]["message_type"], "status-update");
    assert_eq!(listed[0]["status_code"], 200);
    assert!(listed[0]["event_count"].as_i64().unwrap() >= 1);
    let tool = listed
        .iter()
        .find(|d| d["message_type"] == "tool-calls")
        .unwrap();
    assert!(tool["response"]["results"].is_array(), "{tool}");
    assert_eq!(tool["body"]["message"]["type"], "tool-calls");
    let member = app.join_as("member@acme.test", "member").await;
    let res = member.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let other = sign_up(&app.app, "other@else.test", Some("Else Co")).await;
    let res = authed_client(other["token"].as_str().unwrap())
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    let config = app.app.state().config.clone();
    let events_before = app.scalar_i64("SELECT COUNT(*) FROM events").await;
    // Into the same store, by call and by time range: nothing new.
    let by_call = callflex::cli::redeliver(
        &config,
        &RedeliverArgs {
            call: Some(call.clone()),
            ..args()
        },
    )
    .await
    .expect("redeliver the call");
    assert_eq!(by_call.deliveries, deliveries.len());
    assert_eq!((by_call.recorded, by_call.events), (0, 0), "{by_call:?}");
    assert!(by_call.failed.is_empty(), "{by_call:?}");
    let by_range = callflex::cli::redeliver(
        &config,
        &RedeliverArgs {
            from: Some(started - chrono::Duration::seconds(1)),
            to: Some(chrono::Utc::now() + chrono::Duration::seconds(1)),
            organization: Some(app.org),
            ..args()
        },
    )
    .await
    .expect("redeliver the range");
    assert_eq!(by_range.deliveries, deliveries.len());
    assert_eq!(by_range.events, 0, "{by_range:?}");
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM events").await,
        events_before
    );

    // Into a fresh store: the organization is copied, the call rebuilt the same.
    let fresh = eventlog::testing::fresh_url(backend).await;
    let rebuilt = callflex::cli::redeliver(
        &config,
        &RedeliverArgs {
            call: Some(call.clone()),
            into: Some(fresh.clone()),
            ..args()
        },
    )
    .await
    .expect("redeliver into a fresh store");
    assert_eq!(rebuilt.recorded, deliveries.len(), "{rebuilt:?}");
    assert!(rebuilt.failed.is_empty(), "{rebuilt:?}");
    let mut second = config.clone();
    second.database_url = fresh;
    second.listen = "127.0.0.1:0".parse().unwrap();
    second.operator_listen = None;
    second.processes_enabled = false;
    let replica = callflex::startup::Application::build(second)
        .await
        .expect("open the fresh store");
    let replica = TestApp {
        base: format!("http://127.0.0.1:{}", replica.port()),
        ops: String::new(),
        app: replica,
        client: authed_client(&api_key),
        org: app.org,
        token: api_key.clone(),
        user_id: app.user_id.clone(),
    };
    replica.settle().await;
    assert_eq!(read_models(&replica, "replayed").await, expected);
    replica.app.stop().await;
    app.app.stop().await;
}

crate::both_backends!(
    stored_deliveries_rebuild_the_same_call_in_a_fresh_store_and_nothing_in_the_same
);

/// The command line: no selection is a usage error (exit 2).
#[test]
fn redeliver_without_a_selection_exits_2() {
    let dir = std::env::temp_dir().join(format!("redeliver-{}", uuid::Uuid::new_v4()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callflex"))
        .arg("redeliver")
        .env_clear()
        .env("DATABASE_URL", format!("sqlite://{}/x.db", dir.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--call"));
}
