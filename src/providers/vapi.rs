//! VAPI REST: assistants (`POST /assistant`, `PATCH /assistant/{id}`, `DELETE`) and phone
//! numbers imported from Twilio (`POST /phone-number`, `PATCH`, `DELETE`). Bearer
//! `VAPI_API_KEY`. Without a key every call is recorded (sandbox) and answered with a
//! realistic fake id.

use serde_json::{json, Value};

use super::{Auth, Body, HttpClient, ProviderError, Request};
use crate::config::ProviderConfig;

/// What VAPI answered to a create or update.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// VAPI's id of the resource (a UUID; fake in sandbox mode).
    pub id: String,
    /// True when nothing was sent (no credentials).
    pub sandbox: bool,
    /// VAPI's answer (in sandbox mode: the request echoed with the fake id).
    pub body: Value,
}

/// The Twilio number to import into VAPI.
#[derive(Debug, Clone, PartialEq)]
pub struct PhoneNumberImport {
    pub number: String,
    pub twilio_account_sid: String,
    pub twilio_auth_token: String,
    /// VAPI assistant answering the number (none: VAPI asks our server per call).
    pub assistant_id: Option<String>,
    pub name: Option<String>,
    /// Our webhook for `assistant-request` when no assistant is set.
    pub server_url: Option<String>,
}

#[derive(Clone)]
pub struct Vapi {
    client: HttpClient,
}

impl Vapi {
    pub fn new(config: ProviderConfig, store: eventlog::EventStore) -> Self {
        let auth = config
            .api_key
            .as_ref()
            .map(|k| Auth::Bearer(k.expose().to_string()))
            .unwrap_or(Auth::None);
        Self {
            client: HttpClient::new("vapi", config, auth, store),
        }
    }

    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    pub fn sandbox(&self) -> bool {
        self.client.sandbox()
    }

    fn request(method: reqwest::Method, path: String, body: Body, org: &str) -> Request {
        Request {
            method,
            path,
            body,
            idempotency_key: None,
            organization_id: Some(org.to_string()),
        }
    }

    fn created(
        &self,
        answer: Option<super::Answer>,
        sent: &Value,
    ) -> Result<Created, ProviderError> {
        match answer {
            Some(answer) => match answer.body["id"].as_str() {
                Some(id) if !id.is_empty() => Ok(Created {
                    id: id.to_string(),
                    sandbox: false,
                    body: answer.body.clone(),
                }),
                _ => Err(ProviderError::Rejected {
                    provider: "vapi",
                    status: answer.status,
                    body: format!("answer without an id: {}", answer.body),
                }),
            },
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                let mut body = sent.clone();
                body["id"] = json!(id);
                Ok(Created {
                    id,
                    sandbox: true,
                    body,
                })
            }
        }
    }

    /// `POST /assistant` (201 with the new assistant's `id`). `server.secret` is sent but
    /// never recorded.
    pub async fn create_assistant(
        &self,
        payload: &Value,
        org: &str,
    ) -> Result<Created, ProviderError> {
        let shown = redact(payload);
        let answer = self
            .client
            .send_recording(
                Self::request(
                    reqwest::Method::POST,
                    "/assistant".into(),
                    Body::Json(payload.clone()),
                    org,
                ),
                Some(Body::Json(shown.clone())),
            )
            .await?;
        self.created(answer, &shown)
    }

    /// `POST /call`: an outbound call from our VAPI phone number, answered by the assistant,
    /// to `customer` (E.164). The call then reaches us through the webhooks like any other.
    pub async fn create_call(
        &self,
        assistant_id: &str,
        phone_number_id: &str,
        customer: &str,
        org: &str,
    ) -> Result<Created, ProviderError> {
        let payload = json!({
            "assistantId": assistant_id,
            "phoneNumberId": phone_number_id,
            "customer": { "number": customer },
        });
        let answer = self
            .client
            .send_recording(
                Self::request(
                    reqwest::Method::POST,
                    "/call".into(),
                    Body::Json(payload.clone()),
                    org,
                ),
                None,
            )
            .await?;
        self.created(answer, &payload)
    }

    /// The VAPI assistant created for our assistant `ours` (by the `metadata.assistantId`
    /// every payload carries), if any: what a sync that may have crashed after VAPI created
    /// the assistant looks for before creating another. `GET /assistant` (newest first).
    pub async fn find_assistant(
        &self,
        ours: &str,
        org: &str,
    ) -> Result<Option<String>, ProviderError> {
        let answer = self
            .client
            .send(Self::request(
                reqwest::Method::GET,
                "/assistant?limit=1000".into(),
                Body::Empty,
                org,
            ))
            .await?;
        let Some(answer) = answer else {
            return Ok(None);
        };
        Ok(answer
            .body
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["metadata"]["assistantId"] == ours)
            .and_then(|a| a["id"].as_str())
            .map(str::to_string))
    }

    /// `PATCH /assistant/{id}` (200).
    pub async fn update_assistant(
        &self,
        id: &str,
        payload: &Value,
        org: &str,
    ) -> Result<Created, ProviderError> {
        let shown = redact(payload);
        let answer = self
            .client
            .send_recording(
                Self::request(
                    reqwest::Method::PATCH,
                    format!("/assistant/{id}"),
                    Body::Json(payload.clone()),
                    org,
                ),
                Some(Body::Json(shown.clone())),
            )
            .await?;
        let mut sent = shown;
        sent["id"] = json!(id);
        match answer {
            Some(answer) => Ok(Created {
                id: answer.body["id"].as_str().unwrap_or(id).to_string(),
                sandbox: false,
                body: answer.body,
            }),
            None => Ok(Created {
                id: id.to_string(),
                sandbox: true,
                body: sent,
            }),
        }
    }

    /// `DELETE /assistant/{id}`. An assistant VAPI no longer knows (404) counts as deleted.
    pub async fn delete_assistant(&self, id: &str, org: &str) -> Result<(), ProviderError> {
        let request = Self::request(
            reqwest::Method::DELETE,
            format!("/assistant/{id}"),
            Body::Empty,
            org,
        );
        tolerate_not_found(self.client.send(request).await)
    }

    /// `POST /phone-number` with provider `twilio`: VAPI answers calls to the number. The
    /// Twilio auth token is sent but never recorded.
    pub async fn create_phone_number(
        &self,
        import: &PhoneNumberImport,
        org: &str,
    ) -> Result<Created, ProviderError> {
        let mut payload = json!({
            "provider": "twilio",
            "number": import.number,
            "twilioAccountSid": import.twilio_account_sid,
            "twilioAuthToken": import.twilio_auth_token,
        });
        if let Some(id) = &import.assistant_id {
            payload["assistantId"] = json!(id);
        }
        if let Some(name) = &import.name {
            payload["name"] = json!(name);
        }
        if let Some(url) = &import.server_url {
            payload["server"] = json!({ "url": url });
        }
        let mut shown = payload.clone();
        shown["twilioAuthToken"] = json!("***");
        let answer = self
            .client
            .send_recording(
                Self::request(
                    reqwest::Method::POST,
                    "/phone-number".into(),
                    Body::Json(payload),
                    org,
                ),
                Some(Body::Json(shown.clone())),
            )
            .await?;
        self.created(answer, &shown)
    }

    /// `PATCH /phone-number/{id}`: (re)links the number to an assistant (`None` unlinks).
    pub async fn update_phone_number(
        &self,
        id: &str,
        assistant_id: Option<&str>,
        org: &str,
    ) -> Result<bool, ProviderError> {
        let payload = json!({ "assistantId": assistant_id });
        let answer = self
            .client
            .send(Self::request(
                reqwest::Method::PATCH,
                format!("/phone-number/{id}"),
                Body::Json(payload),
                org,
            ))
            .await?;
        Ok(answer.is_none())
    }

    /// `DELETE /phone-number/{id}`; 404 counts as deleted.
    pub async fn delete_phone_number(&self, id: &str, org: &str) -> Result<(), ProviderError> {
        let request = Self::request(
            reqwest::Method::DELETE,
            format!("/phone-number/{id}"),
            Body::Empty,
            org,
        );
        tolerate_not_found(self.client.send(request).await)
    }
}

/// The payload with the webhook secret masked (for records and answers).
pub fn redact(payload: &Value) -> Value {
    let mut shown = payload.clone();
    if shown["server"]["secret"].is_string() {
        shown["server"]["secret"] = json!("***");
    }
    shown
}

/// A delete of something the provider no longer has succeeded.
pub(crate) fn tolerate_not_found(
    result: Result<Option<super::Answer>, ProviderError>,
) -> Result<(), ProviderError> {
    match result {
        Ok(_) | Err(ProviderError::Rejected { status: 404, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
