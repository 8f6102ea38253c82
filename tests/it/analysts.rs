//! Analysts and auditors on the command line: `callflex audit` prints a stream's history or
//! its state as of a position; `callflex replay` applies a slice of the log to scratch
//! tables; a rebuild reports its progress to the end of the log.

use std::process::Command;

use serde_json::{json, Value};

use callflex::cli::ReplayArgs;

use crate::helpers::*;

fn cli(database_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_callflex"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run callflex")
}

async fn the_command_line_audits_a_call_and_replays_a_slice_into_scratch_tables(backend: &str) {
    let app = spawn_app_with(backend, |c| c.processes_enabled = false).await;
    for call in ["first", "second"] {
        app.vapi_ok(&vapi_message(
            "status-update",
            call,
            json!({"status": "in-progress", "customer": {"number": "+15551230000"}}),
        ))
        .await;
        app.vapi_ok(&vapi_message(
            "end-of-call-report",
            call,
            json!({"endedReason": "customer-ended-call", "startedAt": "2024-07-15T10:00:00Z",
                   "endedAt": "2024-07-15T10:01:00Z"}),
        ))
        .await;
    }
    app.settle().await;
    let url = app.app.state().config.database_url.clone();
    let first = callflex::webhooks::vapi::call_id(app.org, "first");

    // The history, one JSON object per event, actors resolved.
    let out = cli(&url, &["audit", "call", &first]);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines[0]["type"], "CallStarted", "{lines:?}");
    assert_eq!(lines[0]["actor"]["provider"], "vapi");
    assert!(lines.iter().any(|l| l["type"] == "CallEnded"));
    // The state as of its first event: in progress, not yet ended.
    let at = lines[0]["position"].as_i64().unwrap().to_string();
    let out = cli(&url, &["audit", "call", &first, "--as-of-position", &at]);
    assert!(out.status.success(), "{out:?}");
    let then: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(then["historical"], true);
    assert_eq!(then["data"]["started"], true, "{then}");
    assert_eq!(then["data"]["ended"], false, "{then}");
    let out = cli(
        &url,
        &["audit", "call", &first, "--as-of", "2999-01-01T00:00:00Z"],
    );
    let now: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(now["data"]["ended"], true, "{now}");
    let out = cli(&url, &["audit", "bogus", "x"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // A slice of the log holding only the second call's events, into scratch tables.
    let positions = app
        .strings(&format!(
            "SELECT CAST(global_position AS TEXT) FROM events WHERE aggregate_id = '{}' \
             ORDER BY global_position",
            callflex::webhooks::vapi::call_id(app.org, "second")
        ))
        .await;
    let from: i64 = positions[0].parse().unwrap();
    let to: i64 = positions.last().unwrap().parse().unwrap();
    let reports = callflex::cli::replay(
        &app.app.state().config,
        &ReplayArgs {
            from: callflex::cli::Bound::Position(from),
            to: callflex::cli::Bound::Position(to),
            names: vec!["calls".into()],
        },
    )
    .await
    .expect("replay");
    assert_eq!(reports[0].events as usize, positions.len());
    assert_eq!(reports[0].tables[0], "calls__replay");
    assert_eq!(
        app.strings("SELECT vapi_call_id FROM calls__replay").await,
        vec!["second"]
    );
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM calls").await,
        2,
        "live untouched"
    );
    // Again, by time: the whole day holds both calls; replaying replaces the scratch tables.
    let out = cli(
        &url,
        &[
            "replay",
            "--from",
            "2000-01-01T00:00:00Z",
            "--to",
            "2999-01-01T00:00:00Z",
            "calls",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM calls__replay").await,
        2
    );
    let out = cli(&url, &["replay", "--from", "5", "--to", "1", "calls"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = cli(&url, &["replay", "--from", "1", "--to", "5", "bogus"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // On a terminal, `callflex rebuild` draws a bar per projector while the service runs.
    let shell = format!(
        "DATABASE_URL='{url}' RUST_LOG=warn {} rebuild calls usage",
        env!("CARGO_BIN_EXE_callflex")
    );
    let out = Command::new("script")
        .args(["-qec", &shell, "/dev/null"])
        .output()
        .expect("run rebuild on a pseudo-terminal (util-linux `script`)");
    let drawn = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{drawn}");
    for shown in ["calls [", "usage [", "/s", "ETA", "swapped in", "calls: "] {
        assert!(drawn.contains(shown), "`{shown}` not drawn: {drawn}");
    }

    // A rebuild reports its progress up to the end of the log.
    let head = app.app.state().store.head().await.unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let handles: Vec<_> = app.app.state().projectors.to_vec();
    projections::rebuild::rebuild_all_with(
        &app.app.state().store,
        &handles,
        Some(std::sync::Arc::new(move |p| record.lock().unwrap().push(p))),
    )
    .await
    .expect("rebuild");
    let seen = seen.lock().unwrap();
    for handle in &handles {
        let last = seen.iter().rfind(|p| p.projector == handle.name()).unwrap();
        assert!(last.position >= head, "{last:?} short of {head}");
        assert!(last.events > 0);
    }
}

crate::both_backends!(the_command_line_audits_a_call_and_replays_a_slice_into_scratch_tables);
