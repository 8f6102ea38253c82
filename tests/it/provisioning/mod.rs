//! Templates, assistants, phone numbers and integrations over real HTTP, on both backends,
//! with `wiremock` servers standing in for VAPI and Twilio that check the exact requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use callflex::config::Secret;
use serde_json::{json, Value};
use uuid::Uuid;
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::*;

mod oauth;
mod recovery;
mod roles;
mod ssrf;

const VAPI_KEY: &str = "vapi-test-key";
const ACCOUNT_SID: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const TWILIO_API: &str = "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Mock VAPI and Twilio servers and an app whose providers point at them (with keys).
struct Providers {
    vapi: MockServer,
    twilio: MockServer,
}

async fn spawn_with_providers(backend: &str) -> (TestApp, Providers) {
    spawn_with_providers_and(backend, |_| {}).await
}

/// Like [`spawn_with_providers`], with `configure` applied last.
async fn spawn_with_providers_and(
    backend: &str,
    configure: impl FnOnce(&mut callflex::config::Config),
) -> (TestApp, Providers) {
    let vapi = MockServer::start().await;
    let twilio = MockServer::start().await;
    let (vapi_uri, twilio_uri) = (vapi.uri(), twilio.uri());
    // VAPI lists no assistant (a sync looks before it creates); a test may mount its own.
    Mock::given(method("GET"))
        .and(path("/assistant"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .with_priority(10)
        .mount(&vapi)
        .await;
    let app = spawn_app_with(backend, move |c| {
        c.vapi.base_url = vapi_uri;
        c.vapi.api_key = Some(Secret::new(VAPI_KEY));
        c.twilio.base_url = twilio_uri;
        c.twilio.api_key = Some(Secret::new(TWILIO_TOKEN));
        c.twilio_account_sid = Some(ACCOUNT_SID.into());
        configure(c);
    })
    .await;
    (app, Providers { vapi, twilio })
}

fn basic_auth() -> String {
    use base64::Engine;
    let raw = format!("{ACCOUNT_SID}:{TWILIO_TOKEN}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Matches a form body containing every given field with exactly the given value.
struct Form(Vec<(&'static str, String)>);

impl wiremock::Match for Form {
    fn matches(&self, request: &Request) -> bool {
        let fields: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        self.0
            .iter()
            .all(|(k, v)| fields.iter().any(|(fk, fv)| fk == k && fv == v))
    }
}

/// Counts the requests it sees (to assert on a mock that answers differently over time).
#[derive(Clone, Default)]
struct Counter(Arc<AtomicUsize>);

impl wiremock::Match for Counter {
    fn matches(&self, _: &Request) -> bool {
        self.0.fetch_add(1, Ordering::SeqCst);
        true
    }
}

impl TestApp {
    fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}/api/v1{path}", self.base))
            .header("X-Organization-Id", self.org.to_string())
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.api(method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body), None)
            .await
    }

    async fn create_trucking_assistant(&self) -> String {
        let (status, body) = self
            .post(
                "/assistants",
                json!({"name": "Dispatch line", "template_slug": "trucking-dispatch",
                       "variables": {"company_name": "Acme Trucking", "bogus": "ignored"}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"]["id"].as_str().unwrap().to_string()
    }
}

async fn templates_are_listed_and_an_unknown_slug_is_404(backend: &str) {
    let app = spawn_app(backend).await;
    let (status, list) = app.get("/templates").await;
    assert_eq!(status, 200, "{list}");
    let slugs: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap().to_string())
        .collect();
    for slug in [
        "trucking-dispatch",
        "after-hours-answering",
        "home-services-booking",
    ] {
        assert!(slugs.contains(&slug.to_string()), "{slugs:?}");
    }
    let (status, one) = app.get("/templates/trucking-dispatch").await;
    assert_eq!(status, 200);
    let t = &one["data"];
    assert!(t["system_prompt"]
        .as_str()
        .unwrap()
        .contains("{{company_name}}"));
    assert_eq!(t["variables"][0]["name"], "company_name");
    assert_eq!(t["variables"][0]["required"], true);
    let functions: Vec<_> = t["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        functions,
        ["logDriverCallout", "transferCall", "takeMessage"]
    );
    assert_eq!(
        t["functions"][0]["parameters"]["required"],
        json!(["driverName", "reason"])
    );
    assert_eq!(t["model"], "gpt-4o-mini");
    let (status, missing) = app.get("/templates/pizza-shop").await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "template_not_found");
    app.app.stop().await;
}

async fn assistants_validate_their_input_and_stay_within_the_organization(backend: &str) {
    let app = spawn_app(backend).await;
    let (status, err) = app
        .post(
            "/assistants",
            json!({"name": "x", "template_slug": "after-hours-answering", "variables": {}}),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["code"], "missing_variable");
    assert_eq!(err["error"]["details"]["variable"], "business_name");
    let (status, err) = app
        .post("/assistants", json!({"name": "x", "template_slug": "nope"}))
        .await;
    assert_eq!(
        (status, err["error"]["code"].clone()),
        (422, json!("unknown_template"))
    );
    let (status, err) = app
        .post(
            "/assistants",
            json!({"name": "x", "system_prompt": "Hi", "functions": ["orderPizza"]}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].clone()),
        (422, json!("unknown_function"))
    );
    let (status, err) = app
        .post("/assistants", json!({"system_prompt": "Hi"}))
        .await;
    assert_eq!(status, 400, "missing name: {err}");
    let (status, err) = app.post("/assistants", json!({"name": "x"})).await;
    assert_eq!(status, 422, "no prompt and no template: {err}");

    let id = app.create_trucking_assistant().await;
    let (status, got) = app.get(&format!("/assistants/{id}")).await;
    assert_eq!(status, 200);
    let a = &got["data"];
    let prompt = a["system_prompt"].as_str().unwrap();
    assert!(
        prompt.contains("for Acme Trucking, a trucking company"),
        "{prompt}"
    );
    assert!(
        !prompt.contains("{{"),
        "all variables substituted: {prompt}"
    );
    assert_eq!(a["variables"], json!({"company_name": "Acme Trucking"}));
    assert_eq!(a["synced"], false);
    assert_eq!(a["voice_id"], "pNInz6obpgDQGcFmaJgB");

    // The test endpoint shows what a sync sends, without sending.
    let (status, test) = app.post(&format!("/assistants/{id}/test"), json!({})).await;
    assert_eq!(status, 200, "{test}");
    assert_eq!(test["valid"], true);
    assert_eq!(test["vapi_request"], "POST /assistant");
    let tools: Vec<_> = test["payload"]["model"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["logDriverCallout", "transferCall", "takeMessage"]);
    assert_eq!(test["payload"]["server"]["secret"], "***");

    // PATCH re-renders the template with new variables.
    let (status, patched) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/assistants/{id}"),
            Some(json!({"variables": {"company_name": "Beta Freight"}})),
            None,
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert!(patched["data"]["system_prompt"]
        .as_str()
        .unwrap()
        .contains("Beta Freight"));

    // Another organization's request does not see it.
    let other = Uuid::new_v4();
    app.app
        .state()
        .organizations
        .execute(
            &other.to_string(),
            aggregates::organization::OrganizationCommand::Create {
                id: other,
                name: "Other".into(),
                owner_user_id: "u2".into(),
                owner_email: "o@other.test".into(),
                actor: "system:test".into(),
            },
            &eventlog::CommandMeta::new("system:test").tenant(other),
        )
        .await
        .unwrap();
    let res = app
        .client
        .get(format!("{}/api/v1/assistants/{id}", app.base))
        .header("X-Organization-Id", other.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let (status, _) = app.get("/assistants/no-such-id").await;
    assert_eq!(status, 404);

    let (status, _) = app
        .call(
            reqwest::Method::DELETE,
            &format!("/assistants/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, list) = app.get("/assistants").await;
    assert_eq!(list["data"], json!([]));
    app.app.stop().await;
}

/// Template → assistant → sync (VAPI fails once with 500, then creates) → search → buy →
/// linked; a retry with the same Idempotency-Key buys nothing; relink; release.
async fn a_template_becomes_a_live_linked_number(backend: &str) {
    let (app, p) = spawn_with_providers(backend).await;
    let org = app.org.to_string();
    let webhook_url = format!("{PUBLIC_URL}/api/webhooks/vapi/{org}");

    // VAPI: POST /assistant answers 500 once, then 201.
    let create_assistant = || {
        Mock::given(method("POST"))
            .and(path("/assistant"))
            .and(header(
                "authorization",
                format!("Bearer {VAPI_KEY}").as_str(),
            ))
            .and(body_partial_json(json!({
                "name": "Dispatch line",
                "model": {"provider": "openai", "model": "gpt-4o-mini", "temperature": 0.7},
                "voice": {"provider": "11labs", "voiceId": "pNInz6obpgDQGcFmaJgB"},
                "transcriber": {"provider": "deepgram", "model": "nova-2", "language": "en"},
                "server": {"url": webhook_url, "secret": VAPI_SECRET},
                "endCallMessage": "Thanks for calling. Goodbye!",
                "silenceTimeoutSeconds": 30,
                "maxDurationSeconds": 600,
                "metadata": {"organizationId": org},
            })))
    };
    create_assistant()
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&p.vapi)
        .await;
    create_assistant()
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "vapi-asst-1"})))
        .expect(1)
        .mount(&p.vapi)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/assistant/vapi-asst-1"))
        .and(header(
            "authorization",
            format!("Bearer {VAPI_KEY}").as_str(),
        ))
        .and(body_partial_json(json!({"name": "Dispatch (night)"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "vapi-asst-1"})))
        .expect(1)
        .mount(&p.vapi)
        .await;

    let id = app.create_trucking_assistant().await;
    let (status, synced) = app.post(&format!("/assistants/{id}/sync"), json!({})).await;
    assert_eq!(status, 200, "{synced}");
    assert_eq!(synced["vapi_assistant_id"], "vapi-asst-1");
    assert_eq!(synced["created"], true);
    assert_eq!(synced["sandbox"], false);
    assert_eq!(synced["data"]["synced"], true);
    // The payload carried the prompt and the tools of the template.
    let sent: Vec<Value> = p
        .vapi
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/assistant" && r.method.as_str() == "POST")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(sent.len(), 2, "one 500, one retry");
    let payload = &sent[1];
    assert_eq!(payload["model"]["messages"][0]["role"], "system");
    assert!(payload["model"]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .contains("Acme Trucking"));
    assert_eq!(
        payload["model"]["tools"][0],
        json!({"type": "function", "function": callflex::templates::function("logDriverCallout")})
    );
    assert!(payload["firstMessage"]
        .as_str()
        .unwrap()
        .contains("Acme Trucking"));

    // A change, then a second sync PATCHes.
    let (status, _) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/assistants/{id}"),
            Some(json!({"name": "Dispatch (night)"})),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, synced) = app.post(&format!("/assistants/{id}/sync"), json!({})).await;
    assert_eq!(status, 200, "{synced}");
    assert_eq!(synced["created"], false);

    // Twilio: search, buy; VAPI: import the number linked to the assistant.
    Mock::given(method("GET"))
        .and(path(format!(
            "{TWILIO_API}/AvailablePhoneNumbers/US/Local.json"
        )))
        .and(query_param("AreaCode", "808"))
        .and(query_param("VoiceEnabled", "true"))
        .and(query_param("SmsEnabled", "true"))
        .and(header("authorization", basic_auth().as_str()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                serde_json::from_str::<Value>(&fixture(
                    "twilio/available-phone-numbers.local.list.response.json",
                ))
                .unwrap(),
            ),
        )
        .mount(&p.twilio)
        .await;
    let mut bought: Value = serde_json::from_str(&fixture(
        "twilio/incoming-phone-numbers.create.response.json",
    ))
    .unwrap();
    bought["phone_number"] = json!("+18089251571");
    Mock::given(method("POST"))
        .and(path(format!("{TWILIO_API}/IncomingPhoneNumbers.json")))
        .and(header("authorization", basic_auth().as_str()))
        .and(Form(vec![
            ("PhoneNumber", "+18089251571".into()),
            ("VoiceUrl", "https://api.vapi.ai/twilio/inbound_call".into()),
            (
                "StatusCallback",
                format!("{PUBLIC_URL}/api/webhooks/twilio/status"),
            ),
            ("StatusCallbackMethod", "POST".into()),
        ]))
        .respond_with(ResponseTemplate::new(201).set_body_json(bought))
        .expect(1)
        .mount(&p.twilio)
        .await;
    Mock::given(method("POST"))
        .and(path("/phone-number"))
        .and(header(
            "authorization",
            format!("Bearer {VAPI_KEY}").as_str(),
        ))
        .and(body_partial_json(json!({
            "provider": "twilio",
            "number": "+18089251571",
            "twilioAccountSid": ACCOUNT_SID,
            "twilioAuthToken": TWILIO_TOKEN,
            "assistantId": "vapi-asst-1",
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "vapi-pn-1"})))
        .expect(1)
        .mount(&p.vapi)
        .await;

    let (status, found) = app
        .post(
            "/phone-numbers/search",
            json!({"area_code": "808", "limit": 5}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["data"][0]["phone_number"], "+18089251571");
    assert_eq!(found["data"][0]["locality"], "Hilo");
    assert_eq!(found["sandbox"], false);

    let buy = json!({"phone_number": "+18089251571", "assistant_id": id});
    let (status, first) = app
        .call(
            reqwest::Method::POST,
            "/phone-numbers",
            Some(buy.clone()),
            Some("buy-1"),
        )
        .await;
    assert_eq!(status, 201, "{first}");
    let number = &first["data"];
    assert_eq!(number["number"], "+18089251571");
    assert_eq!(number["twilio_sid"], "PNaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(number["vapi_phone_number_id"], "vapi-pn-1");
    assert_eq!(number["assistant_id"], json!(id));
    assert_eq!(first["duplicate"], false);
    let number_id = number["id"].as_str().unwrap().to_string();

    // The retry buys nothing and answers the same number.
    let (status, again) = app
        .call(
            reqwest::Method::POST,
            "/phone-numbers",
            Some(buy),
            Some("buy-1"),
        )
        .await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["data"]["id"], json!(number_id));

    let (_, list) = app.get("/phone-numbers").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let (_, assistant) = app.get(&format!("/assistants/{id}")).await;
    assert_eq!(assistant["data"]["phone_number_ids"], json!([number_id]));
    // The line is live: VAPI's assistant-request for the number is answered.
    let ask = vapi_message("assistant-request", "ar-live", json!({}))
        .replace("+15559990000", "+18089251571");
    assert_eq!(
        app.vapi_ok(&ask).await,
        json!({"assistantId": "vapi-asst-1"})
    );
    let (status, test) = app
        .post(&format!("/phone-numbers/{number_id}/test"), json!({}))
        .await;
    assert_eq!(status, 200, "{test}");
    assert_eq!(test["ready"], true, "{test}");
    // A test call rings: VAPI's create-call API, from the number, answered by its assistant.
    Mock::given(method("POST"))
        .and(path("/call"))
        .and(header(
            "authorization",
            format!("Bearer {VAPI_KEY}").as_str(),
        ))
        .and(body_partial_json(json!({
            "assistantId": "vapi-asst-1",
            "phoneNumberId": "vapi-pn-1",
            "customer": {"number": "+15550001234"},
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "vapi-call-1"})))
        .expect(1)
        .mount(&p.vapi)
        .await;
    let (status, rang) = app
        .post(
            &format!("/phone-numbers/{number_id}/test"),
            json!({"call": "+15550001234"}),
        )
        .await;
    assert_eq!(status, 200, "{rang}");
    assert_eq!(rang["call_id"], "vapi-call-1", "{rang}");
    assert_eq!(rang["sandbox"], false);
    // The assistant's test rings too, from the number linked to it.
    Mock::given(method("POST"))
        .and(path("/call"))
        .and(body_partial_json(json!({
            "assistantId": "vapi-asst-1",
            "phoneNumberId": "vapi-pn-1",
            "customer": {"number": "+15550004321"},
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "vapi-call-2"})))
        .expect(1)
        .mount(&p.vapi)
        .await;
    let (status, rang) = app
        .post(
            &format!("/assistants/{id}/test"),
            json!({"call": "+15550004321"}),
        )
        .await;
    assert_eq!(status, 200, "{rang}");
    assert_eq!(rang["call_id"], "vapi-call-2", "{rang}");
    let (status, refused) = app
        .post(
            &format!("/assistants/{id}/test"),
            json!({"call": "not a number"}),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    // The Twilio auth token sent to VAPI is never recorded.
    let bodies = app
        .strings("SELECT body FROM outbound_requests WHERE provider = 'vapi'")
        .await;
    assert!(bodies
        .iter()
        .all(|b| !b.contains(TWILIO_TOKEN) && !b.contains(VAPI_SECRET)));
    // The deleting an assistant in use is refused.
    let (status, err) = app
        .call(
            reqwest::Method::DELETE,
            &format!("/assistants/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].clone()),
        (409, json!("assistant_in_use"))
    );

    // Unlink (PATCH in VAPI), then release (VAPI delete, Twilio delete).
    Mock::given(method("PATCH"))
        .and(path("/phone-number/vapi-pn-1"))
        .and(body_partial_json(json!({"assistantId": null})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "vapi-pn-1"})))
        .expect(1)
        .mount(&p.vapi)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/phone-number/vapi-pn-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "vapi-pn-1"})))
        .expect(1)
        .mount(&p.vapi)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!(
            "{TWILIO_API}/IncomingPhoneNumbers/PNaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.json"
        )))
        .and(header("authorization", basic_auth().as_str()))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&p.twilio)
        .await;
    let (status, patched) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/phone-numbers/{number_id}"),
            Some(json!({"assistant_id": null})),
            None,
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["data"]["assistant_id"], Value::Null);
    let (status, _) = app
        .call(
            reqwest::Method::DELETE,
            &format!("/phone-numbers/{number_id}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = app.get(&format!("/phone-numbers/{number_id}")).await;
    assert_eq!(status, 404);
    app.app.stop().await;
    // Every mock's `expect` is verified when the servers drop.
    drop(p);
}

/// Twilio refuses (400): 502, the failure is recorded, nothing is provisioned, VAPI is not
/// called; the retry with the same key buys exactly once.
async fn a_refused_purchase_answers_502_and_provisions_nothing(backend: &str) {
    let (app, p) = spawn_with_providers(backend).await;
    let purchases = Counter::default();
    Mock::given(method("POST"))
        .and(path(format!("{TWILIO_API}/IncomingPhoneNumbers.json")))
        .and(purchases.clone())
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"code": 21422, "message": "PhoneNumber is not available", "status": 400}),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&p.twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{TWILIO_API}/IncomingPhoneNumbers.json")))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({"sid": "PNbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "phone_number": "+14155550123"}),
        ))
        .expect(1)
        .mount(&p.twilio)
        .await;
    Mock::given(method("POST"))
        .and(path("/phone-number"))
        .and(body_partial_json(
            json!({"provider": "twilio", "number": "+14155550123"}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "vapi-pn-2"})))
        .expect(1)
        .mount(&p.vapi)
        .await;

    let buy = json!({"phone_number": "+14155550123"});
    let (status, err) = app
        .call(
            reqwest::Method::POST,
            "/phone-numbers",
            Some(buy.clone()),
            Some("k-1"),
        )
        .await;
    assert_eq!(status, 502, "{err}");
    assert_eq!(err["error"]["code"], "provider_rejected");
    assert_eq!(err["error"]["details"]["provider"], "twilio");
    assert_eq!(err["error"]["details"]["status"], 400);
    assert_eq!(
        purchases.0.load(Ordering::SeqCst),
        1,
        "a 400 is not retried"
    );
    let (_, list) = app.get("/phone-numbers").await;
    assert_eq!(list["data"], json!([]));
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM events WHERE event_type = 'PhoneNumberPurchaseFailed'"
        )
        .await,
        1
    );
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM events WHERE event_type = 'PhoneNumberProvisioned'")
            .await,
        0
    );
    // The same key again: the failed purchase starts over and succeeds, once.
    let (status, ok) = app
        .call(
            reqwest::Method::POST,
            "/phone-numbers",
            Some(buy.clone()),
            Some("k-1"),
        )
        .await;
    assert_eq!(status, 201, "{ok}");
    let (status, again) = app
        .call(
            reqwest::Method::POST,
            "/phone-numbers",
            Some(buy),
            Some("k-1"),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["data"]["id"], ok["data"]["id"]);
    assert_eq!(
        app.scalar_i64(
            "SELECT COUNT(*) FROM outbound_requests WHERE provider = 'twilio' AND method = 'POST'"
        )
        .await,
        2,
        "one refused purchase, one purchase"
    );
    app.app.stop().await;
    drop(p);
}

/// VAPI refuses the import: the number Twilio sold is released again and nothing is
/// provisioned.
async fn a_vapi_failure_releases_the_bought_number(backend: &str) {
    let (app, p) = spawn_with_providers(backend).await;
    Mock::given(method("POST"))
        .and(path(format!("{TWILIO_API}/IncomingPhoneNumbers.json")))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({"sid": "PNcccccccccccccccccccccccccccccccc", "phone_number": "+14155550199"}),
        ))
        .expect(1)
        .mount(&p.twilio)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!(
            "{TWILIO_API}/IncomingPhoneNumbers/PNcccccccccccccccccccccccccccccccc.json"
        )))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&p.twilio)
        .await;
    Mock::given(method("POST"))
        .and(path("/phone-number"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(json!({"message": ["number is invalid"]})),
        )
        .expect(1)
        .mount(&p.vapi)
        .await;
    let (status, err) = app
        .post("/phone-numbers", json!({"phone_number": "+14155550199"}))
        .await;
    assert_eq!(status, 502, "{err}");
    assert_eq!(err["error"]["details"]["provider"], "vapi");
    let (_, list) = app.get("/phone-numbers").await;
    assert_eq!(list["data"], json!([]));
    app.app.stop().await;
    drop(p);
}

/// Without credentials: fake ids, `sandbox: true`, and every request recorded with
/// `sandbox = 1`.
async fn sandbox_mode_answers_fake_ids_and_records_every_request(backend: &str) {
    let app = spawn_app(backend).await;
    let id = app.create_trucking_assistant().await;
    let (status, synced) = app.post(&format!("/assistants/{id}/sync"), json!({})).await;
    assert_eq!(status, 200, "{synced}");
    assert_eq!(synced["sandbox"], true);
    assert!(Uuid::parse_str(synced["vapi_assistant_id"].as_str().unwrap()).is_ok());
    let (status, found) = app
        .post(
            "/phone-numbers/search",
            json!({"area_code": "415", "limit": 3}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["sandbox"], true);
    assert_eq!(found["data"][0]["phone_number"], "+14155550100");
    assert_eq!(found["data"].as_array().unwrap().len(), 3);
    let (status, bought) = app
        .post(
            "/phone-numbers",
            json!({"area_code": "415", "assistant_id": id}),
        )
        .await;
    assert_eq!(status, 201, "{bought}");
    assert_eq!(bought["sandbox"], true);
    let sid = bought["data"]["twilio_sid"].as_str().unwrap();
    assert!(sid.starts_with("PN") && sid.len() == 34, "{sid}");
    assert!(sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(bought["data"]["number"], "+14155550100");
    assert!(Uuid::parse_str(bought["data"]["vapi_phone_number_id"].as_str().unwrap()).is_ok());
    let rows = app
        .strings(
            "SELECT provider || ' ' || method || ' ' || url FROM outbound_requests \
             WHERE sandbox = 1 ORDER BY created_at",
        )
        .await;
    assert!(rows.len() >= 4, "{rows:?}");
    assert!(rows
        .iter()
        .any(|r| r.starts_with("vapi POST") && r.ends_with("/assistant")));
    assert!(rows
        .iter()
        .any(|r| r.starts_with("twilio POST") && r.ends_with("/IncomingPhoneNumbers.json")));
    assert!(rows
        .iter()
        .any(|r| r.starts_with("vapi POST") && r.ends_with("/phone-number")));
    assert_eq!(
        app.scalar_i64("SELECT COUNT(*) FROM outbound_requests WHERE sandbox = 0")
            .await,
        0
    );
    app.app.stop().await;
}

/// A webhook integration: connect (secret shown once), test (signed delivery checked by the
/// target), disconnect; an OAuth integration answers an authorization URL.
async fn a_webhook_integration_gets_signed_test_deliveries(backend: &str) {
    // The target is a local listener: allowed only by the development settings.
    let app = spawn_app_with(backend, |c| {
        c.egress.allow_http = true;
        c.egress.allow_private = true;
    })
    .await;
    let target = MockServer::start().await;
    let (status, err) = app
        .post("/integrations/webhook/connect", json!({"url": "not a url"}))
        .await;
    assert_eq!(status, 422, "{err}");
    let (status, connected) = app
        .post(
            "/integrations/webhook/connect",
            json!({"url": format!("{}/hooks/callflex", target.uri())}),
        )
        .await;
    assert_eq!(status, 200, "{connected}");
    let secret = connected["signing_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(connected["data"]["connected"], true);

    struct Signed(String);
    impl wiremock::Match for Signed {
        fn matches(&self, request: &Request) -> bool {
            let expected =
                callflex::http::provisioning::integrations::signature(&self.0, &request.body);
            request
                .headers
                .get("x-callflex-signature")
                .and_then(|v| v.to_str().ok())
                == Some(expected.as_str())
        }
    }
    Mock::given(method("POST"))
        .and(path("/hooks/callflex"))
        .and(Signed(secret.clone()))
        .and(body_partial_json(json!({"type": "integration.test"})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&target)
        .await;
    let (status, test) = app.post("/integrations/webhook/test", json!({})).await;
    assert_eq!(status, 200, "{test}");
    assert_eq!(test["delivered"], true, "{test}");
    assert_eq!(test["status"], 204);

    let (_, list) = app.get("/integrations").await;
    let webhook = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["provider"] == "webhook")
        .cloned()
        .unwrap();
    assert_eq!(webhook["connected"], true);
    assert!(
        !webhook.to_string().contains(&secret),
        "the secret is shown once"
    );

    let (status, oauth) = app
        .post("/integrations/google_calendar/connect", json!({}))
        .await;
    assert_eq!(status, 200, "{oauth}");
    let url = oauth["authorization_url"].as_str().unwrap();
    assert!(url.starts_with("https://accounts.google.com/"), "{url}");
    assert!(url.contains("state="), "{url}");
    let (status, _) = app.post("/integrations/myspace/connect", json!({})).await;
    assert_eq!(status, 404);

    let (status, _) = app
        .call(reqwest::Method::DELETE, "/integrations/webhook", None, None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = app.post("/integrations/webhook/test", json!({})).await;
    assert_eq!(status, 404);
    app.app.stop().await;
    drop(target);
}

crate::both_backends!(
    templates_are_listed_and_an_unknown_slug_is_404,
    assistants_validate_their_input_and_stay_within_the_organization,
    a_template_becomes_a_live_linked_number,
    a_refused_purchase_answers_502_and_provisions_nothing,
    a_vapi_failure_releases_the_bought_number,
    sandbox_mode_answers_fake_ids_and_records_every_request,
    a_webhook_integration_gets_signed_test_deliveries,
);
