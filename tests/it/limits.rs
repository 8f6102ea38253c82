//! Body limits on `/api/v1`: enforced before buffering, declared or chunked.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// The resident set of this process (the service runs inside it), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Writes a request head and then up to `total` body bytes (chunked when `chunked`) until the
/// server stops reading; returns the status line of the answer.
async fn send_huge(port: u16, path: &str, total: usize, chunked: bool) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {total}")
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![b'a'; 1024 * 1024];
    let mut sent = 0;
    while sent < total {
        let written = if chunked {
            let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
            framed.extend_from_slice(&chunk);
            framed.extend_from_slice(b"\r\n");
            stream.write_all(&framed).await
        } else {
            stream.write_all(&chunk).await
        };
        if written.is_err() {
            break; // the server answered and closed
        }
        sent += chunk.len();
        // Stop early once the answer is there.
        let mut peek = [0u8; 1];
        if let Ok(Ok(n)) =
            tokio::time::timeout(std::time::Duration::from_millis(1), stream.peek(&mut peek)).await
        {
            if n > 0 {
                break;
            }
        }
    }
    if chunked && sent >= total {
        let _ = stream.write_all(b"0\r\n\r\n").await;
    }
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut answer))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    String::from_utf8_lossy(&answer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

async fn huge_bodies_are_refused_before_they_are_buffered(backend: &str) {
    let app = spawn_app(backend).await;
    let port = app.app.port();
    let before = rss();
    for (path, chunked) in [
        ("/api/v1/auth/signin", true),
        ("/api/v1/auth/signin", false),
        ("/api/v1/contacts", true),
        ("/api/v1/auth/signup", false),
    ] {
        let status = send_huge(port, path, 200 * 1024 * 1024, chunked).await;
        assert!(
            status.contains(" 413"),
            "{path} (chunked: {chunked}) answered {status}"
        );
    }
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 20 * 1024 * 1024,
        "200 MiB bodies grew RSS by {} MiB",
        grown / 1024 / 1024
    );
    // A body just over the auth limit gets the error shape; a normal one still works.
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/signin", app.base))
        .header("content-type", "application/json")
        .body(format!("{{\"email\":\"{}\"}}", "x".repeat(70 * 1024)))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 413);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert_eq!(body["error"]["details"]["limit_bytes"], 64 * 1024);
    let res = app
        .client
        .get(format!("{}/api/v1/auth/me", app.base))
        .send()
        .await
        .expect("me");
    assert_eq!(res.status(), 200);
    app.app.stop().await;
}

crate::both_backends!(huge_bodies_are_refused_before_they_are_buffered);
