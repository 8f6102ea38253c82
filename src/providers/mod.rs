//! Outbound provider clients (VAPI, Twilio, Stripe, Resend, OpenAI-compatible LLM).
//!
//! Every client goes through [`HttpClient`]: a real reqwest client with a configurable base
//! URL, a timeout, retries with back-off on transient failures (connect errors, 429, 5xx), and
//! a record of each request in `outbound_requests`. Without credentials a client runs in
//! sandbox mode: the request is recorded (visibly, `sandbox = 1`) and a realistic fake answer
//! is returned by the caller instead of sending anything.

pub mod egress;
pub mod llm;
pub mod oauth;
pub mod resend;
pub mod stripe;
pub mod twilio;
pub mod vapi;

use std::time::Duration;

use eventlog::{now_ms, EventStore};
use serde_json::Value;

use crate::config::ProviderConfig;

/// The longest `Retry-After` one request waits out itself before retrying.
const MAX_INLINE_RETRY_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider answered with an error status that retrying will not fix.
    #[error("{provider} refused the request ({status}): {body}")]
    Rejected {
        provider: &'static str,
        status: u16,
        body: String,
    },
    /// The provider could not be reached or kept failing after the retries. `retry_after`:
    /// how long it asked us to wait (`Retry-After` on a 429 or 503).
    #[error("{provider} is unavailable: {reason}")]
    Unavailable {
        provider: &'static str,
        reason: String,
        retry_after: Option<Duration>,
    },
    #[error("could not record the outbound request: {0}")]
    Record(#[from] sqlx::Error),
}

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    Bearer(String),
    Basic { user: String, password: String },
    None,
}

/// The body of a request.
#[derive(Debug, Clone)]
pub enum Body {
    Json(Value),
    Form(Vec<(String, String)>),
    Empty,
}

impl Body {
    fn describe(&self) -> String {
        match self {
            Body::Json(v) => v.to_string(),
            Body::Form(pairs) => serde_json::to_string(pairs).unwrap_or_default(),
            Body::Empty => String::new(),
        }
    }
}

/// A request to one provider.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: reqwest::Method,
    /// Path under the provider's base URL (starting with `/`).
    pub path: String,
    pub body: Body,
    pub idempotency_key: Option<String>,
    pub organization_id: Option<String>,
}

/// The provider's answer (or, in sandbox mode, `None`: the caller fabricates one).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    /// `Retry-After` in seconds, when the provider sent one.
    pub retry_after: Option<Duration>,
}

/// `value` with every string replaced by `***` (keys, numbers and flags stay).
fn mask(value: &Value) -> String {
    fn walk(value: &Value) -> Value {
        match value {
            Value::String(_) => Value::String("***".into()),
            Value::Array(items) => Value::Array(items.iter().map(walk).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), walk(v))).collect())
            }
            other => other.clone(),
        }
    }
    walk(value).to_string()
}

#[derive(Clone)]
pub struct HttpClient {
    provider: &'static str,
    config: ProviderConfig,
    auth: Auth,
    http: reqwest::Client,
    store: EventStore,
    max_attempts: u32,
    backoff: Duration,
}

impl HttpClient {
    pub fn new(
        provider: &'static str,
        config: ProviderConfig,
        auth: Auth,
        store: EventStore,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            provider,
            config,
            auth,
            http,
            store,
            max_attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }

    /// Shorter back-off (tests).
    /// How many times one `send` tries a transient failure (processes retry by their own
    /// policy, durably, and use 1).
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn sandbox(&self) -> bool {
        self.config.sandbox()
    }

    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// Sends `request` (or only records it in sandbox mode, returning `Ok(None)`).
    pub async fn send(&self, request: Request) -> Result<Option<Answer>, ProviderError> {
        self.send_recording(request, None).await
    }

    /// Like [`HttpClient::send`], but records `recorded` instead of the real body in
    /// `outbound_requests` (for bodies that carry credentials).
    pub async fn send_recording(
        &self,
        request: Request,
        recorded: Option<Body>,
    ) -> Result<Option<Answer>, ProviderError> {
        self.send_inner(request, recorded, false).await
    }

    /// Like [`HttpClient::send_recording`], and the answer is recorded with every string
    /// field of its JSON replaced by `***` (for answers that carry credentials, such as OAuth
    /// tokens). The caller still gets the real answer.
    pub async fn send_confidential(
        &self,
        request: Request,
        recorded: Body,
    ) -> Result<Option<Answer>, ProviderError> {
        self.send_inner(request, Some(recorded), true).await
    }

    async fn send_inner(
        &self,
        request: Request,
        recorded: Option<Body>,
        mask_answer: bool,
    ) -> Result<Option<Answer>, ProviderError> {
        let url = format!("{}{}", self.config.base_url, request.path);
        let id = uuid::Uuid::new_v4().to_string();
        let shown = match recorded {
            Some(body) => Request {
                body,
                ..request.clone()
            },
            None => request.clone(),
        };
        self.record(&id, &shown, &url).await?;
        if self.sandbox() {
            tracing::info!(provider = self.provider, %url, "sandbox: request recorded, not sent");
            return Ok(None);
        }
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            let result = self.try_send(&request, &url).await;
            let transient = match &result {
                Ok(answer) => answer.status == 429 || answer.status >= 500,
                Err(_) => true,
            };
            if !transient || attempt >= self.max_attempts {
                break result;
            }
            // A provider that asks for a longer pause than a request can wait gets it from the
            // caller (a process retries durably at that time).
            let asked = result.as_ref().ok().and_then(|a| a.retry_after);
            if asked.is_some_and(|wait| wait > MAX_INLINE_RETRY_AFTER) {
                break result;
            }
            let pause = self.backoff * 2u32.pow(attempt - 1);
            tokio::time::sleep(asked.map_or(pause, |wait| wait.max(pause))).await;
        };
        let (status, response) = match &outcome {
            Ok(answer) if mask_answer => (Some(i64::from(answer.status)), mask(&answer.body)),
            Ok(answer) => (Some(i64::from(answer.status)), answer.body.to_string()),
            Err(err) => (None, err.to_string()),
        };
        sqlx::query(
            "UPDATE outbound_requests SET status = $1, response = $2, attempts = $3 WHERE id = $4",
        )
        .bind(status)
        .bind(response)
        .bind(i64::from(attempt))
        .bind(id)
        .execute(self.store.relaxed_pool())
        .await?;
        match outcome {
            Ok(answer) if answer.status < 400 => Ok(Some(answer)),
            Ok(answer) if answer.status == 429 || answer.status >= 500 => {
                Err(ProviderError::Unavailable {
                    provider: self.provider,
                    reason: format!("status {} after {attempt} attempts", answer.status),
                    retry_after: answer.retry_after,
                })
            }
            Ok(answer) => Err(ProviderError::Rejected {
                provider: self.provider,
                status: answer.status,
                body: answer.body.to_string(),
            }),
            Err(reason) => Err(ProviderError::Unavailable {
                provider: self.provider,
                reason,
                retry_after: None,
            }),
        }
    }

    async fn try_send(&self, request: &Request, url: &str) -> Result<Answer, String> {
        let mut builder = self.http.request(request.method.clone(), url);
        builder = match &self.auth {
            Auth::Bearer(token) => builder.bearer_auth(token),
            Auth::Basic { user, password } => builder.basic_auth(user, Some(password)),
            Auth::None => builder,
        };
        if let Some(key) = &request.idempotency_key {
            builder = builder.header("Idempotency-Key", key);
        }
        builder = match &request.body {
            Body::Json(value) => builder.json(value),
            Body::Form(pairs) => builder.form(pairs),
            Body::Empty => builder,
        };
        let response = builder.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.map_err(|e| e.to_string())?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }

    /// `outbound_requests` is the operators' record of what was sent, not what decides
    /// anything (the log does): written through the relaxed pool, so recording a request
    /// costs no flush (a crash can lose the last few milliseconds of it).
    async fn record(&self, id: &str, request: &Request, url: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO outbound_requests (id, provider, method, url, body, idempotency_key, \
             sandbox, organization_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id.to_string())
        .bind(self.provider.to_string())
        .bind(request.method.to_string())
        .bind(url.to_string())
        .bind(request.body.describe())
        .bind(request.idempotency_key.clone())
        .bind(i64::from(self.sandbox()))
        .bind(request.organization_id.clone())
        .bind(now_ms())
        .execute(self.store.relaxed_pool())
        .await?;
        Ok(())
    }
}

/// An error with its causes (reqwest's own message hides why a connection was refused).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
