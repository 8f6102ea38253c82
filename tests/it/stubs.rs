//! Local stand-ins for the outbound providers the processes call (an OpenAI-compatible LLM,
//! Resend, Twilio Messages), on 127.0.0.1. They record what was sent and can fail on purpose.
//! Resend's stub deduplicates by `Idempotency-Key` as Resend does; Twilio's keeps the messages
//! it accepted and lists them (`GET Messages.json`), as the in-doubt lookup expects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callflex::config::{Config, ProviderConfig, Secret};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const TWILIO_SID: &str = "ACtest00000000000000000000000000";
pub const LLM_KEY: &str = "sk-test-llm";
/// What the stub serves as a call's recording.
pub const RECORDING: &[u8] = b"RIFF\x24\x00\x00\x00WAVEfmt a stub recording";

/// What the stubs were asked, and how to answer.
#[derive(Default)]
pub struct Ledger {
    /// Every request, `(path, headers, body)`.
    pub requests: Vec<(String, HashMap<String, String>, String)>,
    /// Resend: idempotency key → number of requests with it.
    pub email_keys: HashMap<String, usize>,
    /// Twilio: messages accepted, `(sid, to, from, body)`.
    pub sms: Vec<(String, String, String, String)>,
    /// Answers to fail with before succeeding, per provider (`llm`, `resend`, `twilio`).
    pub fail_first: HashMap<&'static str, Vec<u16>>,
    /// The extraction JSON the LLM answers (default: a valid one).
    pub extraction: Option<String>,
    pub llm_summary: String,
    /// The `Retry-After` (seconds) sent with every failure (default 1).
    pub retry_after: Option<u64>,
}

#[derive(Clone)]
pub struct Stubs {
    pub server: Arc<MockServer>,
    pub ledger: Arc<Mutex<Ledger>>,
}

struct Responder {
    provider: &'static str,
    ledger: Arc<Mutex<Ledger>>,
    delay: Duration,
}

fn form(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut ledger = self.ledger.lock().unwrap();
        let body = String::from_utf8_lossy(&request.body).to_string();
        let headers = request
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        ledger
            .requests
            .push((request.url.path().to_string(), headers, body.clone()));
        if let Some(failures) = ledger.fail_first.get_mut(self.provider) {
            if !failures.is_empty() {
                let status = failures.remove(0);
                let wait = ledger.retry_after.unwrap_or(1).to_string();
                return ResponseTemplate::new(status)
                    .insert_header("Retry-After", wait.as_str())
                    .set_body_json(json!({"error": "failing on purpose"}));
            }
        }
        let answer = match (self.provider, request.method.as_str()) {
            ("llm", _) => {
                let asked: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let content = if asked.get("response_format").is_some() {
                    ledger.extraction.clone().unwrap_or_else(|| {
                        json!({"callType": "booking", "sentiment": "positive",
                               "callerName": "Dana", "actionItems": ["Call Dana back"],
                               "urgency": "normal"})
                        .to_string()
                    })
                } else {
                    ledger.llm_summary.clone()
                };
                ResponseTemplate::new(200).set_body_json(json!({
                    "id": "chatcmpl-1",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                }))
            }
            ("resend", _) => {
                let key = request
                    .headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let n = ledger.email_keys.entry(key.clone()).or_default();
                *n += 1;
                ResponseTemplate::new(200).set_body_json(json!({"id": format!("re_{key}")}))
            }
            ("twilio", "GET") => {
                let query: HashMap<String, String> =
                    request.url.query_pairs().into_owned().collect();
                let messages: Vec<Value> = ledger
                    .sms
                    .iter()
                    .filter(|(_, to, from, _)| {
                        Some(to) == query.get("To") && Some(from) == query.get("From")
                    })
                    .map(|(sid, to, from, body)| {
                        json!({"sid": sid, "to": to, "from": from, "body": body, "status": "sent"})
                    })
                    .collect();
                ResponseTemplate::new(200).set_body_json(json!({"messages": messages}))
            }
            ("twilio", _) => {
                let fields = form(&body);
                let sid = format!("SM{:032}", ledger.sms.len() + 1);
                ledger.sms.push((
                    sid.clone(),
                    fields.get("To").cloned().unwrap_or_default(),
                    fields.get("From").cloned().unwrap_or_default(),
                    fields.get("Body").cloned().unwrap_or_default(),
                ));
                ResponseTemplate::new(201).set_body_json(json!({"sid": sid, "status": "queued"}))
            }
            _ => ResponseTemplate::new(404),
        };
        answer.set_delay(self.delay)
    }
}

/// Every stub started by this test binary, by base URL (so a test's sign-up can read its
/// verification email from the stub that received it).
static STARTED: Mutex<Vec<(String, Arc<Mutex<Ledger>>)>> = Mutex::new(Vec::new());

/// The JSON bodies of the emails the stub at `base_url` received, oldest first.
pub fn emails_received(base_url: &str) -> Vec<Value> {
    let started = STARTED.lock().unwrap();
    // A port can be reused by a later stub: the latest one is this test's.
    let Some((_, ledger)) = started.iter().rev().find(|(uri, _)| uri == base_url) else {
        return Vec::new();
    };
    let ledger = ledger.lock().unwrap();
    ledger
        .requests
        .iter()
        .filter(|(p, _, _)| p == "/emails")
        .filter_map(|(_, _, body)| serde_json::from_str(body).ok())
        .collect()
}

/// The JSON bodies of the emails every stub received (for a child process's sign-up: the
/// address names the test).
pub fn all_emails() -> Vec<Value> {
    let started: Vec<String> = STARTED
        .lock()
        .unwrap()
        .iter()
        .map(|(uri, _)| uri.clone())
        .collect();
    started
        .iter()
        .flat_map(|uri| emails_received(uri))
        .collect()
}

impl Stubs {
    /// Stubs answering after `delay`.
    pub async fn start(delay: Duration) -> Stubs {
        let server = MockServer::start().await;
        let ledger = Arc::new(Mutex::new(Ledger {
            llm_summary: "Dana called to book a delivery for Friday.".into(),
            ..Ledger::default()
        }));
        let responder = |provider| Responder {
            provider,
            ledger: ledger.clone(),
            delay,
        };
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(responder("llm"))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/emails"))
            .respond_with(responder("resend"))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/recordings/rec-1.wav"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "audio/wav")
                    .set_body_bytes(RECORDING.to_vec()),
            )
            .mount(&server)
            .await;
        Mock::given(path_regex(r"^/2010-04-01/Accounts/[^/]+/Messages\.json$"))
            .respond_with(responder("twilio"))
            .mount(&server)
            .await;
        STARTED.lock().unwrap().push((server.uri(), ledger.clone()));
        Stubs {
            server: Arc::new(server),
            ledger,
        }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Points the LLM, Resend and Twilio at the stubs, with keys (so nothing is sandboxed),
    /// and makes failed steps retry quickly.
    pub fn configure(&self, config: &mut Config) {
        let live = |key: &str| ProviderConfig {
            base_url: self.uri(),
            api_key: Some(Secret::new(key)),
        };
        config.llm = live(LLM_KEY);
        config.resend = live("re_test_key");
        config.twilio = live("twilio-token");
        config.twilio_account_sid = Some(TWILIO_SID.into());
        config.process_first_backoff_ms = 100;
        // The recordings are on the stub (plain http on 127.0.0.1), and go to a scratch dir.
        config.egress.allow_http = true;
        config.egress.allow_private = true;
        config.recordings_dir =
            std::env::temp_dir().join(format!("callflex-recordings-{}", uuid::Uuid::new_v4()));
    }

    /// The same, as environment variables for a child process.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LLM_BASE_URL".into(), self.uri()),
            ("LLM_API_KEY".into(), LLM_KEY.into()),
            ("RESEND_BASE_URL".into(), self.uri()),
            ("RESEND_API_KEY".into(), "re_test_key".into()),
            ("TWILIO_BASE_URL".into(), self.uri()),
            ("TWILIO_AUTH_TOKEN".into(), "twilio-token".into()),
            ("TWILIO_ACCOUNT_SID".into(), TWILIO_SID.into()),
            ("PROCESS_FIRST_BACKOFF_MS".into(), "100".into()),
        ]
    }

    /// The notification emails received (not the sign-up's verification email).
    pub fn notification_emails(&self) -> Vec<(String, HashMap<String, String>, String)> {
        self.requests_to("/emails")
            .into_iter()
            .filter(|(_, headers, _)| {
                headers
                    .get("idempotency-key")
                    .is_some_and(|k| k.starts_with("notification:"))
            })
            .collect()
    }

    pub fn requests_to(&self, prefix: &str) -> Vec<(String, HashMap<String, String>, String)> {
        self.ledger
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(p, _, _)| p.starts_with(prefix) || p.ends_with(prefix))
            .cloned()
            .collect()
    }
}
