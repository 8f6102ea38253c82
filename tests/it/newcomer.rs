//! A newcomer's first ten minutes: the CLI says what went wrong, emailed links open a page,
//! `/health` tells the truth about providers.

use std::process::Command;

use crate::helpers::*;

#[test]
fn rebuild_of_an_unknown_projector_exits_2_listing_the_names() {
    let dir = std::env::temp_dir().join(format!("callflex-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let out = Command::new(env!("CARGO_BIN_EXE_callflex"))
        .args(["rebuild", "bogus"])
        .env("DATABASE_URL", format!("sqlite://{}/cli.db", dir.display()))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let names: Vec<&str> = projections::all().iter().map(|p| p.name()).collect();
    for name in &names {
        assert!(stderr.contains(name), "{name} missing from: {stderr}");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_callflex"))
        .args(["rebuild", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    // The README says the same: safe while the service runs.
    assert!(help.contains("Safe while the service runs"), "{help}");
    for name in &names {
        assert!(
            help.contains(name),
            "`rebuild --help` does not list {name}: {help}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

async fn emailed_links_open_pages_and_health_reports_provider_modes(backend: &str) {
    let app = spawn_app(backend).await;
    for path in ["/verify-email?token=abc", "/reset-password?token=abc"] {
        let res = reqwest::get(format!("{}{path}", app.base))
            .await
            .expect("page");
        assert_eq!(res.status(), 200, "{path}");
        let html = res.text().await.expect("html");
        assert!(html.contains("/api/v1/auth/"), "{path}: {html}");
    }
    let health: serde_json::Value = reqwest::get(format!("{}/health", app.ops))
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    let mode = |name: &str| {
        health["providers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == name))
            .map(|p| p["mode"].clone())
    };
    assert_eq!(mode("stripe"), Some("sandbox".into()), "{health}");
    assert_eq!(mode("llm"), Some("sandbox".into()), "{health}");
    assert_eq!(mode("resend"), Some("sandbox".into()), "{health}");
    app.app.stop().await;
}

crate::both_backends!(emailed_links_open_pages_and_health_reports_provider_modes);

/// `simulate --token` plays calls into the signed-in user's own organization over HTTP only;
/// `--create-demo-org` against a database that does not exist says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_plays_calls_into_your_own_organization_over_http() {
    let url = eventlog::testing::fresh_url("sqlite").await;
    let service = crate::child::ChildService::start(&url, &[]);
    let (token, _) =
        crate::child::sign_up_over_http(&service.base, &url, "sim@newcomer.test").await;
    let elsewhere = std::env::temp_dir().join(format!("callflex-sim-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&elsewhere).expect("dir");
    let base = service.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_callflex"))
            .args([
                "simulate",
                "--token",
                &token,
                "--rotate-secret",
                "--calls",
                "3",
            ])
            .args(["--concurrency", "2", "--url", &base])
            // Run from another directory, with no database configured: HTTP only.
            .current_dir(&elsewhere)
            .env_remove("DATABASE_URL")
            .output()
            .expect("simulate")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "simulate failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("(0 failed) for 3 calls"), "{stdout}");

    let missing = std::env::temp_dir().join(format!("callflex-none-{}", uuid::Uuid::new_v4()));
    let base = service.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_callflex"))
            .args(["simulate", "--create-demo-org", "--url", &base])
            .env(
                "DATABASE_URL",
                format!("sqlite://{}/callflex.db", missing.display()),
            )
            .output()
            .expect("simulate")
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no database at"), "{stderr}");
}
