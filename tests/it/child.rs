//! The real `callflex` binary as a child process: for tests that stop it with a signal or
//! `kill -9`, or run two of them on one database.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Row;

use crate::helpers::{authed_client, PASSWORD, VAPI_SECRET};

pub struct ChildService {
    pub child: Child,
    pub base: String,
    /// The operator port: `/health` in detail, `/metrics`.
    pub ops: String,
    /// Everything the process printed so far (stdout and stderr).
    pub output: Arc<Mutex<String>>,
}

impl ChildService {
    /// Starts `callflex serve` on `database_url` (a free port) and waits until it listens.
    pub fn start(database_url: &str, env: &[(&str, &str)]) -> ChildService {
        let mut command = Command::new(env!("CARGO_BIN_EXE_callflex"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("PORT", "0")
            .env("DATABASE_MAX_CONNECTIONS", "8")
            .env("VAPI_WEBHOOK_SECRET", VAPI_SECRET)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start callflex");
        let output = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for (stream, port_tx) in [
            (
                Box::new(stdout) as Box<dyn std::io::Read + Send>,
                Some(port_tx),
            ),
            (Box::new(stderr), None),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let line = without_ansi(&line);
                    if let (Some(tx), Some(port)) = (&port_tx, listening_ports(&line)) {
                        let _ = tx.send(port);
                    }
                    if let Ok(mut out) = output.lock() {
                        out.push_str(&line);
                        out.push('\n');
                    }
                }
            });
        }
        let (port, operator_port) = port_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("callflex did not start: {}", output.lock().unwrap())
            });
        ChildService {
            child,
            base: format!("http://127.0.0.1:{port}"),
            ops: format!("http://127.0.0.1:{operator_port}"),
            output,
        }
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!("callflex did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

impl Drop for ChildService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The line without terminal colour sequences (`ESC [ ... m`).
fn without_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The service's port and its operator port, from its "CallFlex listening" line.
fn listening_ports(line: &str) -> Option<(u16, u16)> {
    if !line.contains("CallFlex listening") {
        return None;
    }
    let field = |name: &str| -> Option<u16> {
        let rest = line.split(&format!(" {name}=")).nth(1)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    Some((field("port")?, field("operator_port")?))
}

/// Signs `email` up against a running service and verifies it (the token is read from the
/// sandboxed email in the database); returns (session token, organization id).
pub async fn sign_up_over_http(base: &str, database_url: &str, email: &str) -> (String, String) {
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{base}/api/v1/auth/signup"))
        .json(
            &serde_json::json!({"email": email, "password": PASSWORD, "name": "Owner",
                                  "organization_name": "Child Co"}),
        )
        .send()
        .await
        .expect("signup");
    assert_eq!(res.status(), 202);
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database_url).await.expect("connect");
    let mut token = None;
    for _ in 0..400 {
        let rows = sqlx::query("SELECT body FROM outbound_requests WHERE provider = 'resend'")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
        // Sandboxed emails are in the database; emails sent to a local Resend stub are in it.
        let bodies = rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>(0).ok())
            .filter_map(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .chain(crate::stubs::all_emails());
        token = bodies.into_iter().find_map(|body| {
            if body["to"][0] != email {
                return None;
            }
            let text = body["text"].as_str()?;
            let rest = text.split("Verification token: ").nth(1)?;
            rest.split_whitespace().next().map(str::to_string)
        });
        if token.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    pool.close().await;
    let token = token.expect("verification email");
    let res = client
        .post(format!("{base}/api/v1/auth/verify-email"))
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .expect("verify");
    let body: serde_json::Value = res.json().await.expect("verify answer");
    let session = body["token"].as_str().expect("session").to_string();
    let org = body["organization"]["id"]
        .as_str()
        .expect("org")
        .to_string();
    let _ = authed_client(&session);
    (session, org)
}
