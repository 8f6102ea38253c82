//! Resend: transactional email (`POST /emails`).

use serde_json::json;

use super::{Auth, Body, HttpClient, ProviderError, Request};
use crate::config::ProviderConfig;

#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub idempotency_key: Option<String>,
}

#[derive(Clone)]
pub struct Resend {
    client: HttpClient,
    /// Embedded (SQLite) development default: sandboxed emails are also printed to the log,
    /// so a newcomer sees the verification link without opening the database. Never with
    /// PostgreSQL (production logs carry no personal data).
    print_sandboxed: bool,
}

impl Resend {
    pub fn new(config: ProviderConfig, store: eventlog::EventStore) -> Self {
        let auth = config
            .api_key
            .as_ref()
            .map(|k| Auth::Bearer(k.expose().to_string()))
            .unwrap_or(Auth::None);
        let print_sandboxed = store.backend() == eventlog::Backend::Sqlite;
        Self {
            client: HttpClient::new("resend", config, auth, store),
            print_sandboxed,
        }
    }

    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    /// Sends an email; returns Resend's id (a `sandbox-…` id when nothing was sent).
    pub async fn send(&self, email: &Email) -> Result<String, ProviderError> {
        let mut body = json!({
            "from": email.from,
            "to": email.to,
            "subject": email.subject,
            "text": email.text,
        });
        if let Some(html) = &email.html {
            body["html"] = json!(html);
        }
        // Email bodies can carry secrets (password-reset links): with real credentials only the
        // envelope is kept in `outbound_requests`; sandbox mode keeps everything, visibly, because
        // showing what would have been sent is its purpose.
        let recorded = (!self.client.sandbox()).then(|| {
            let mut shown = body.clone();
            shown["text"] = json!(format!("[redacted: {} chars]", email.text.len()));
            if shown.get("html").is_some() {
                shown["html"] = json!("[redacted]");
            }
            Body::Json(shown)
        });
        let answer = self
            .client
            .send_recording(
                Request {
                    method: reqwest::Method::POST,
                    path: "/emails".into(),
                    body: Body::Json(body),
                    idempotency_key: email.idempotency_key.clone(),
                    organization_id: None,
                },
                recorded,
            )
            .await?;
        if self.client.sandbox() && self.print_sandboxed {
            tracing::info!(
                to = %email.to.join(", "),
                subject = %email.subject,
                "sandbox email (not sent; RESEND_API_KEY is unset):\n{}",
                email.text
            );
        }
        Ok(match answer {
            Some(answer) => answer.body["id"].as_str().unwrap_or_default().to_string(),
            None => format!("sandbox-{}", uuid::Uuid::new_v4()),
        })
    }
}
