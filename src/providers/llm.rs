//! An OpenAI-compatible LLM (`POST /v1/chat/completions`): post-call summaries and the
//! call-data extraction. Request and answer shapes are in `wire::llm`.

use super::{Auth, Body, HttpClient, ProviderError, Request};
use crate::config::Config;

#[derive(Clone)]
pub struct Llm {
    client: HttpClient,
    model: String,
    path: &'static str,
}

impl Llm {
    /// Sandbox (nothing sent, nothing invented) without `LLM_API_KEY`. One try per call:
    /// the process retries by its own durable policy.
    pub fn new(config: &Config, store: eventlog::EventStore) -> Self {
        let auth = config
            .llm
            .api_key
            .as_ref()
            .map(|k| Auth::Bearer(k.expose().to_string()))
            .unwrap_or(Auth::None);
        Self {
            client: HttpClient::new("llm", config.llm.clone(), auth, store).with_attempts(1),
            model: config.llm_model.clone(),
            // Compatible services are configured either with or without the `/v1`.
            path: if config.llm.base_url.trim_end_matches('/').ends_with("/v1") {
                "/chat/completions"
            } else {
                "/v1/chat/completions"
            },
        }
    }

    pub fn sandbox(&self) -> bool {
        self.client.sandbox()
    }

    /// The model's answer text; `Ok(None)` in sandbox mode (the request is recorded).
    pub async fn complete(
        &self,
        system: &str,
        user: &str,
        json_mode: bool,
        organization_id: &str,
    ) -> Result<Option<String>, ProviderError> {
        let body = wire::llm::chat_request(&self.model, system, user, json_mode);
        // Transcripts are personal data: only the envelope is kept in `outbound_requests`.
        let recorded = Body::Json(serde_json::json!({
            "model": self.model,
            "json_mode": json_mode,
            "transcript_chars": user.chars().count(),
        }));
        let answer = self
            .client
            .send_recording(
                Request {
                    method: reqwest::Method::POST,
                    path: self.path.into(),
                    body: Body::Json(body),
                    idempotency_key: None,
                    organization_id: Some(organization_id.to_string()),
                },
                Some(recorded),
            )
            .await?;
        let Some(answer) = answer else {
            return Ok(None);
        };
        match wire::llm::completion_text(&answer.body) {
            Some(text) => Ok(Some(text.to_string())),
            None => Err(ProviderError::Rejected {
                provider: "llm",
                status: answer.status,
                body: "the answer has no choices[0].message.content".into(),
            }),
        }
    }
}
