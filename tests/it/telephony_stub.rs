//! A local VAPI and Twilio that remember what they created, as the real ones do, so a
//! process resuming after a crash can look before it creates again: VAPI lists its
//! assistants (with their metadata), Twilio lists the account's numbers. Each answer waits
//! `delay`, so a `kill -9` can land while a request is in flight.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const VAPI_KEY: &str = "vapi-test-key";
pub const TWILIO_SID: &str = "ACtelephony000000000000000000000";
pub const TWILIO_TOKEN: &str = "twilio-test-token";

#[derive(Default)]
pub struct Created {
    /// VAPI assistants: (id, metadata.assistantId).
    pub assistants: Vec<(String, String)>,
    /// VAPI phone numbers imported: (id, number, assistantId).
    pub vapi_numbers: Vec<(String, String, Option<String>)>,
    /// Twilio numbers bought and not released: (sid, number).
    pub twilio_numbers: Vec<(String, String)>,
    /// Every number ever bought.
    pub bought: usize,
}

#[derive(Clone)]
pub struct TelephonyStub {
    pub vapi: Arc<MockServer>,
    pub twilio: Arc<MockServer>,
    pub created: Arc<Mutex<Created>>,
}

struct Vapi(Arc<Mutex<Created>>, Duration);
struct Twilio(Arc<Mutex<Created>>, Duration);

impl Respond for Vapi {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut created = self.0.lock().unwrap();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let path = request.url.path();
        let answer = match (request.method.as_str(), path) {
            ("GET", "/assistant") => {
                let list: Vec<Value> = created
                    .assistants
                    .iter()
                    .rev()
                    .map(|(id, ours)| json!({"id": id, "metadata": {"assistantId": ours}}))
                    .collect();
                ResponseTemplate::new(200).set_body_json(list)
            }
            ("POST", "/assistant") => {
                let id = format!("vapi-asst-{}", created.assistants.len() + 1);
                let ours = body["metadata"]["assistantId"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                created.assistants.push((id.clone(), ours));
                ResponseTemplate::new(201).set_body_json(json!({"id": id}))
            }
            ("PATCH", p) if p.starts_with("/assistant/") => {
                let id = p.trim_start_matches("/assistant/");
                ResponseTemplate::new(200).set_body_json(json!({"id": id}))
            }
            ("POST", "/phone-number") => {
                let id = format!("vapi-pn-{}", created.vapi_numbers.len() + 1);
                let number = body["number"].as_str().unwrap_or("").to_string();
                let assistant = body["assistantId"].as_str().map(str::to_string);
                created.vapi_numbers.push((id.clone(), number, assistant));
                ResponseTemplate::new(201).set_body_json(json!({"id": id}))
            }
            _ => ResponseTemplate::new(404),
        };
        answer.set_delay(self.1)
    }
}

impl Respond for Twilio {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut created = self.0.lock().unwrap();
        let path = request.url.path().to_string();
        let query: std::collections::HashMap<String, String> =
            request.url.query_pairs().into_owned().collect();
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(&request.body)
                .into_owned()
                .collect();
        let answer = if path.ends_with("/AvailablePhoneNumbers/US/Local.json") {
            let area = query
                .get("AreaCode")
                .cloned()
                .unwrap_or_else(|| "415".into());
            ResponseTemplate::new(200).set_body_json(json!({"available_phone_numbers": [
                {"phone_number": format!("+1{area}5550100"), "friendly_name": "A number",
                 "capabilities": {"voice": true, "sms": true}}]}))
        } else if path.ends_with("/IncomingPhoneNumbers.json") && request.method.as_str() == "GET" {
            let wanted = query.get("PhoneNumber").cloned().unwrap_or_default();
            let list: Vec<Value> = created
                .twilio_numbers
                .iter()
                .filter(|(_, number)| *number == wanted)
                .map(|(sid, number)| json!({"sid": sid, "phone_number": number}))
                .collect();
            ResponseTemplate::new(200).set_body_json(json!({"incoming_phone_numbers": list}))
        } else if path.ends_with("/IncomingPhoneNumbers.json") {
            created.bought += 1;
            let sid = format!("PN{:032}", created.bought);
            let number = form.get("PhoneNumber").cloned().unwrap_or_default();
            created.twilio_numbers.push((sid.clone(), number.clone()));
            ResponseTemplate::new(201).set_body_json(json!({"sid": sid, "phone_number": number}))
        } else if request.method.as_str() == "DELETE" {
            let sid = path
                .rsplit('/')
                .next()
                .unwrap_or("")
                .trim_end_matches(".json")
                .to_string();
            created.twilio_numbers.retain(|(s, _)| *s != sid);
            ResponseTemplate::new(204)
        } else {
            ResponseTemplate::new(404)
        };
        answer.set_delay(self.1)
    }
}

impl TelephonyStub {
    pub async fn start(delay: Duration) -> TelephonyStub {
        let created = Arc::new(Mutex::new(Created::default()));
        let vapi = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(Vapi(created.clone(), delay))
            .mount(&vapi)
            .await;
        let twilio = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(Twilio(created.clone(), delay))
            .mount(&twilio)
            .await;
        TelephonyStub {
            vapi: Arc::new(vapi),
            twilio: Arc::new(twilio),
            created,
        }
    }

    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("VAPI_BASE_URL".into(), self.vapi.uri()),
            ("VAPI_API_KEY".into(), VAPI_KEY.into()),
            ("TWILIO_BASE_URL".into(), self.twilio.uri()),
            ("TWILIO_AUTH_TOKEN".into(), TWILIO_TOKEN.into()),
            ("TWILIO_ACCOUNT_SID".into(), TWILIO_SID.into()),
        ]
    }

    pub fn configure(&self, config: &mut callflex::config::Config) {
        use callflex::config::{ProviderConfig, Secret};
        config.vapi = ProviderConfig {
            base_url: self.vapi.uri(),
            api_key: Some(Secret::new(VAPI_KEY)),
        };
        config.twilio = ProviderConfig {
            base_url: self.twilio.uri(),
            api_key: Some(Secret::new(TWILIO_TOKEN)),
        };
        config.twilio_account_sid = Some(TWILIO_SID.into());
    }
}
