//! One signed POST of an outbound event to a customer's URL, through the egress policy
//! (https, public addresses only, no redirects), and what came of it.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use wire::standard_webhooks;

use crate::config::Config;
use crate::state::AppState;

/// How much of a receiver's answer is kept with the attempt.
const RESPONSE_PREFIX: usize = 512;
/// The longest `Retry-After` honoured: the schedule's longest wait.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

pub enum Outcome {
    Delivered,
    /// 410: the receiver wants no more.
    Gone,
    /// Anything else; `retry_after` when a 429 or 503 said when to come back.
    Failed {
        error: String,
        retry_after: Option<DateTime<Utc>>,
    },
}

pub struct Sent {
    pub outcome: Outcome,
    /// `{status_code, latency_ms, response}` or `{error, latency_ms}`: kept with the attempt.
    pub detail: Value,
}

pub struct Sender {
    client: Result<reqwest::Client, String>,
    timeout_ms: u64,
}

impl Sender {
    pub fn new(config: &Config) -> Self {
        let timeout = Duration::from_millis(config.webhook_timeout_ms);
        Sender {
            client: config.egress.client(timeout).map_err(|e| e.to_string()),
            timeout_ms: config.webhook_timeout_ms,
        }
    }

    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    pub async fn send(
        &self,
        state: &AppState,
        url: &str,
        secrets: &[String],
        envelope: &Value,
        now: DateTime<Utc>,
    ) -> Sent {
        let failed = |error: String, latency: Option<u128>| Sent {
            detail: json!({ "error": error, "latency_ms": latency.map(|l| l as i64) }),
            outcome: Outcome::Failed {
                error,
                retry_after: None,
            },
        };
        // Checked again at send time: the policy may have tightened since the URL was saved.
        if let Err(err) = state.config.egress.check_url(url) {
            return failed(format!("the endpoint's url is refused: {err}"), None);
        }
        let client = match &self.client {
            Ok(client) => client,
            Err(err) => return failed(format!("no HTTP client: {err}"), None),
        };
        let body = envelope.to_string();
        let id = envelope["id"].as_str().unwrap_or_default();
        let timestamp = Utc::now().timestamp();
        let keys: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let signature =
            match standard_webhooks::signature_header(&keys, id, timestamp, body.as_bytes()) {
                Ok(signature) => signature,
                Err(err) => return failed(format!("the signing secret is unusable: {err}"), None),
            };
        let started = Instant::now();
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .header("user-agent", "CallFlex-Webhooks/1")
            .header(standard_webhooks::ID_HEADER, id)
            .header(standard_webhooks::TIMESTAMP_HEADER, timestamp.to_string())
            .header(standard_webhooks::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(err) => {
                let error = if err.is_timeout() {
                    format!("no answer within {} ms", self.timeout_ms)
                } else {
                    crate::providers::error_chain(&err)
                };
                metrics::counter!("outbound_webhook_attempts_total", "outcome" => "no_answer")
                    .increment(1);
                return failed(error, Some(started.elapsed().as_millis()));
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        // The first bytes of the answer, for the attempt log; a slow body costs at most the
        // request's timeout (the client's), and is never read past the prefix.
        let mut prefix = Vec::new();
        while prefix.len() < RESPONSE_PREFIX {
            match response.chunk().await {
                Ok(Some(chunk)) => prefix.extend_from_slice(&chunk),
                _ => break,
            }
        }
        prefix.truncate(RESPONSE_PREFIX);
        let latency = started.elapsed().as_millis() as i64;
        let detail = json!({
            "status_code": status.as_u16(),
            "latency_ms": latency,
            "response": String::from_utf8_lossy(&prefix),
        });
        let outcome = if status.is_success() {
            Outcome::Delivered
        } else if status == reqwest::StatusCode::GONE {
            Outcome::Gone
        } else {
            let throttled = matches!(status.as_u16(), 429 | 503);
            Outcome::Failed {
                error: format!("the receiver answered {status}"),
                retry_after: retry_after.filter(|_| throttled).map(|wait| {
                    now + chrono::Duration::from_std(wait.min(MAX_RETRY_AFTER)).unwrap_or_default()
                }),
            }
        };
        let counted = match &outcome {
            Outcome::Delivered => "delivered",
            Outcome::Gone => "gone",
            Outcome::Failed { .. } => "failed",
        };
        metrics::counter!("outbound_webhook_attempts_total", "outcome" => counted).increment(1);
        metrics::histogram!("outbound_webhook_attempt_seconds")
            .record(started.elapsed().as_secs_f64());
        Sent { outcome, detail }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by receivers we know of).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}
