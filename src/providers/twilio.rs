//! Twilio REST (`/2010-04-01/Accounts/{AccountSid}/...`, Basic auth `AccountSid:AuthToken`,
//! form bodies, snake_case JSON answers): available numbers, buying, updating and releasing
//! incoming numbers, and SMS. Without an account sid and auth token every call is recorded
//! (sandbox) and answered with realistic fakes (`PN…`/`SM…` sids, `+1 {area} 555 01xx`).

use serde_json::Value;

use super::vapi::tolerate_not_found;
use super::{Auth, Body, HttpClient, ProviderError, Request};
use crate::config::Config;

/// A number Twilio offers.
#[derive(Debug, Clone, PartialEq)]
pub struct AvailableNumber {
    pub phone_number: String,
    pub friendly_name: String,
    pub locality: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
    pub voice: bool,
    pub sms: bool,
}

/// A number bought (an IncomingPhoneNumber).
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingNumber {
    pub sid: String,
    pub phone_number: String,
    pub friendly_name: Option<String>,
    pub sandbox: bool,
}

/// A sent SMS.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub sid: String,
    pub status: String,
    pub sandbox: bool,
}

/// What a number does with calls.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberConfig {
    pub voice_url: String,
    pub status_callback: String,
    pub friendly_name: Option<String>,
}

#[derive(Clone)]
pub struct Twilio {
    client: HttpClient,
    account_sid: String,
    auth_token: Option<String>,
}

/// 32 random lowercase hex digits (the body of a Twilio sid).
fn hex32() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn text(value: &Value, key: &str) -> Option<String> {
    value[key].as_str().map(str::to_string)
}

impl Twilio {
    /// Sandbox unless both `TWILIO_ACCOUNT_SID` and `TWILIO_AUTH_TOKEN` are set.
    pub fn new(config: &Config, store: eventlog::EventStore) -> Self {
        let mut provider = config.twilio.clone();
        let account_sid = config.twilio_account_sid.clone().unwrap_or_default();
        if account_sid.is_empty() {
            provider.api_key = None;
        }
        let auth_token = provider.api_key.as_ref().map(|k| k.expose().to_string());
        let auth = match &auth_token {
            Some(token) => Auth::Basic {
                user: account_sid.clone(),
                password: token.clone(),
            },
            None => Auth::None,
        };
        let account_sid = if account_sid.is_empty() {
            "ACsandbox0000000000000000000000000".to_string()
        } else {
            account_sid
        };
        Self {
            client: HttpClient::new("twilio", provider, auth, store),
            account_sid,
            auth_token,
        }
    }

    /// One try per request: a process retries by its own durable policy, and an SMS must
    /// not be re-sent blindly after an answer that may have followed a send.
    pub fn single_attempt(mut self) -> Self {
        self.client = self.client.with_attempts(1);
        self
    }

    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    pub fn sandbox(&self) -> bool {
        self.client.sandbox()
    }

    pub fn account_sid(&self) -> &str {
        &self.account_sid
    }

    /// The auth token (VAPI needs it to import a number); `None` in sandbox mode.
    pub fn auth_token(&self) -> Option<&str> {
        self.auth_token.as_deref()
    }

    fn path(&self, rest: &str) -> String {
        format!("/2010-04-01/Accounts/{}/{rest}", self.account_sid)
    }

    fn request(&self, method: reqwest::Method, path: String, body: Body, org: &str) -> Request {
        Request {
            method,
            path,
            body,
            idempotency_key: None,
            organization_id: Some(org.to_string()),
        }
    }

    /// `GET AvailablePhoneNumbers/US/Local.json?AreaCode=..&VoiceEnabled=true&SmsEnabled=true`.
    pub async fn search(
        &self,
        area_code: &str,
        limit: u32,
        org: &str,
    ) -> Result<(Vec<AvailableNumber>, bool), ProviderError> {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("AreaCode", area_code)
            .append_pair("VoiceEnabled", "true")
            .append_pair("SmsEnabled", "true")
            .append_pair("PageSize", &limit.to_string())
            .finish();
        let path = self.path(&format!("AvailablePhoneNumbers/US/Local.json?{query}"));
        let answer = self
            .client
            .send(self.request(reqwest::Method::GET, path, Body::Empty, org))
            .await?;
        let Some(answer) = answer else {
            let numbers = (0..limit.min(100))
                .map(|i| AvailableNumber {
                    phone_number: format!("+1{area_code}55501{i:02}"),
                    friendly_name: format!("({area_code}) 555-01{i:02}"),
                    locality: Some("Sandbox".into()),
                    region: Some("CA".into()),
                    postal_code: None,
                    voice: true,
                    sms: true,
                })
                .collect();
            return Ok((numbers, true));
        };
        let numbers = answer.body["available_phone_numbers"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|n| {
                        let phone_number = text(n, "phone_number")?;
                        Some(AvailableNumber {
                            friendly_name: text(n, "friendly_name")
                                .unwrap_or_else(|| phone_number.clone()),
                            phone_number,
                            locality: text(n, "locality"),
                            region: text(n, "region"),
                            postal_code: text(n, "postal_code"),
                            voice: n["capabilities"]["voice"].as_bool().unwrap_or(false),
                            sms: n["capabilities"]["sms"].as_bool().unwrap_or(false),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((numbers, false))
    }

    fn config_form(config: &NumberConfig) -> Vec<(String, String)> {
        let mut form = vec![
            ("VoiceUrl".to_string(), config.voice_url.clone()),
            ("VoiceMethod".to_string(), "POST".to_string()),
            ("StatusCallback".to_string(), config.status_callback.clone()),
            ("StatusCallbackMethod".to_string(), "POST".to_string()),
        ];
        if let Some(name) = &config.friendly_name {
            form.push(("FriendlyName".to_string(), name.clone()));
        }
        form
    }

    fn incoming(
        answer: Option<super::Answer>,
        number: &str,
        name: Option<&str>,
    ) -> Result<IncomingNumber, ProviderError> {
        match answer {
            Some(answer) => {
                let sid = text(&answer.body, "sid")
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| ProviderError::Rejected {
                        provider: "twilio",
                        status: answer.status,
                        body: format!("answer without a sid: {}", answer.body),
                    })?;
                Ok(IncomingNumber {
                    sid,
                    phone_number: text(&answer.body, "phone_number")
                        .unwrap_or_else(|| number.to_string()),
                    friendly_name: text(&answer.body, "friendly_name"),
                    sandbox: false,
                })
            }
            None => Ok(IncomingNumber {
                sid: format!("PN{}", hex32()),
                phone_number: number.to_string(),
                friendly_name: name.map(str::to_string),
                sandbox: true,
            }),
        }
    }

    /// `POST IncomingPhoneNumbers.json`: buys `number` (201).
    pub async fn buy(
        &self,
        number: &str,
        config: &NumberConfig,
        org: &str,
    ) -> Result<IncomingNumber, ProviderError> {
        let mut form = vec![("PhoneNumber".to_string(), number.to_string())];
        form.extend(Self::config_form(config));
        let answer = self
            .client
            .send(self.request(
                reqwest::Method::POST,
                self.path("IncomingPhoneNumbers.json"),
                Body::Form(form),
                org,
            ))
            .await?;
        Self::incoming(answer, number, config.friendly_name.as_deref())
    }

    /// `GET IncomingPhoneNumbers.json?PhoneNumber=..`: the account's number `number`, if it
    /// owns it (how a retry learns whether a crashed purchase went through). In sandbox mode
    /// nothing was ever bought, so nothing is found.
    pub async fn find_incoming(
        &self,
        number: &str,
        org: &str,
    ) -> Result<Option<IncomingNumber>, ProviderError> {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("PhoneNumber", number)
            .finish();
        let path = self.path(&format!("IncomingPhoneNumbers.json?{query}"));
        let answer = self
            .client
            .send(self.request(reqwest::Method::GET, path, Body::Empty, org))
            .await?;
        let Some(answer) = answer else {
            return Ok(None);
        };
        let found = answer.body["incoming_phone_numbers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| text(n, "phone_number").as_deref() == Some(number))
            .and_then(|n| {
                Some(IncomingNumber {
                    sid: text(n, "sid").filter(|s| !s.is_empty())?,
                    phone_number: number.to_string(),
                    friendly_name: text(n, "friendly_name"),
                    sandbox: false,
                })
            });
        Ok(found)
    }

    /// `POST IncomingPhoneNumbers/{sid}.json`: changes the given fields.
    pub async fn update(
        &self,
        sid: &str,
        fields: Vec<(String, String)>,
        org: &str,
    ) -> Result<bool, ProviderError> {
        let answer = self
            .client
            .send(self.request(
                reqwest::Method::POST,
                self.path(&format!("IncomingPhoneNumbers/{sid}.json")),
                Body::Form(fields),
                org,
            ))
            .await?;
        Ok(answer.is_none())
    }

    /// `DELETE IncomingPhoneNumbers/{sid}.json` (204); a number Twilio no longer has (404)
    /// counts as released.
    pub async fn release(&self, sid: &str, org: &str) -> Result<(), ProviderError> {
        let request = self.request(
            reqwest::Method::DELETE,
            self.path(&format!("IncomingPhoneNumbers/{sid}.json")),
            Body::Empty,
            org,
        );
        tolerate_not_found(self.client.send(request).await)
    }

    /// `GET Messages.json?To=..&From=..&DateSent>=..`: a message with exactly `body` sent
    /// from `from` to `to` on or after `since`'s day (how a send in doubt is looked up before
    /// it is repeated: Twilio's Messages API takes no idempotency key). `Ok(None)` in sandbox
    /// mode, where nothing was sent.
    pub async fn find_message(
        &self,
        to: &str,
        from: &str,
        body: &str,
        since: chrono::DateTime<chrono::Utc>,
        org: &str,
    ) -> Result<Option<Message>, ProviderError> {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("To", to)
            .append_pair("From", from)
            .append_pair("DateSent>", &since.format("%Y-%m-%d").to_string())
            .append_pair("PageSize", "100")
            .finish();
        let answer = self
            .client
            .send(self.request(
                reqwest::Method::GET,
                format!("{}?{query}", self.path("Messages.json")),
                Body::Empty,
                org,
            ))
            .await?;
        let Some(answer) = answer else {
            return Ok(None);
        };
        let found = answer.body["messages"].as_array().and_then(|messages| {
            messages
                .iter()
                .find(|m| m["body"].as_str() == Some(body) && m["status"] != "failed")
        });
        Ok(found.map(|m| Message {
            sid: text(m, "sid").unwrap_or_default(),
            status: text(m, "status").unwrap_or_else(|| "queued".into()),
            sandbox: false,
        }))
    }

    /// `POST Messages.json` (To, From, Body; 201).
    pub async fn send_sms(
        &self,
        to: &str,
        from: &str,
        body: &str,
        org: &str,
    ) -> Result<Message, ProviderError> {
        let form = vec![
            ("To".to_string(), to.to_string()),
            ("From".to_string(), from.to_string()),
            ("Body".to_string(), body.to_string()),
        ];
        let answer = self
            .client
            .send(self.request(
                reqwest::Method::POST,
                self.path("Messages.json"),
                Body::Form(form),
                org,
            ))
            .await?;
        Ok(match answer {
            Some(answer) => Message {
                sid: text(&answer.body, "sid").unwrap_or_default(),
                status: text(&answer.body, "status").unwrap_or_else(|| "queued".into()),
                sandbox: false,
            },
            None => Message {
                sid: format!("SM{}", hex32()),
                status: "queued".into(),
                sandbox: true,
            },
        })
    }
}
