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
    for name in [
        "accounts",
        "calls",
        "transcripts",
        "contacts",
        "usage",
        "billing",
    ] {
        assert!(stderr.contains(name), "{name} missing from: {stderr}");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_callflex"))
        .args(["rebuild", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("accounts") && help.contains("stopped"),
        "{help}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

async fn emailed_links_open_pages_and_health_reports_unused_providers(backend: &str) {
    let app = spawn_app(backend).await;
    for path in ["/verify-email?token=abc", "/reset-password?token=abc"] {
        let res = reqwest::get(format!("{}{path}", app.base))
            .await
            .expect("page");
        assert_eq!(res.status(), 200, "{path}");
        let html = res.text().await.expect("html");
        assert!(html.contains("/api/v1/auth/"), "{path}: {html}");
    }
    let health: serde_json::Value = reqwest::get(format!("{}/health", app.base))
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
    assert_eq!(mode("stripe"), Some("unused".into()), "{health}");
    assert_eq!(mode("llm"), Some("unused".into()), "{health}");
    assert_eq!(mode("resend"), Some("sandbox".into()), "{health}");
    app.app.stop().await;
}

crate::both_backends!(emailed_links_open_pages_and_health_reports_unused_providers);
