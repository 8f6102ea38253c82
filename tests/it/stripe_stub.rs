//! A local Stripe on 127.0.0.1: customers, Checkout Sessions, Billing Portal sessions and
//! Billing Meter events, form-encoded as Stripe takes them. It checks what Stripe checks
//! (a secret key, form bodies, an `Idempotency-Key` on every POST: a repeat answers the
//! first answer; a meter event `identifier` already accepted under another key is refused),
//! can fail on purpose, and plays Stripe's side of the loop: it sends the signed
//! `checkout.session.completed` and `customer.subscription.created` events back to us.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use callflex::config::{Config, ProviderConfig, Secret};
use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::STRIPE_SECRET;

pub const STRIPE_KEY: &str = "sk_test_callflex";

/// One request, as Stripe would read it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub idempotency_key: Option<String>,
    pub form: BTreeMap<String, String>,
    pub status: u16,
}

#[derive(Default)]
pub struct StripeLedger {
    pub requests: Vec<Seen>,
    /// Idempotency key → the first answer.
    answers: HashMap<String, Value>,
    /// Meter event identifiers accepted, with their value.
    pub meter_events: BTreeMap<String, i64>,
    /// Statuses to answer before succeeding, per path.
    pub fail_first: HashMap<String, Vec<u16>>,
    created: usize,
}

#[derive(Clone)]
pub struct StripeStub {
    pub server: Arc<MockServer>,
    pub ledger: Arc<Mutex<StripeLedger>>,
}

struct Responder(Arc<Mutex<StripeLedger>>);

fn form(body: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// A refusal: its status and message (the response is built from them).
fn error(status: u16, message: &str) -> (u16, String) {
    (status, message.to_string())
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut ledger = self.0.lock().unwrap();
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let path = request.url.path().to_string();
        let fields = form(&request.body);
        let key = header("idempotency-key");
        let mut seen = Seen {
            path: path.clone(),
            idempotency_key: key.clone(),
            form: fields.clone(),
            status: 200,
        };
        let answer = (|| {
            if header("authorization") != Some(format!("Bearer {STRIPE_KEY}")) {
                return Err(error(401, "Invalid API Key provided"));
            }
            let form_encoded = header("content-type")
                .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
            if !form_encoded {
                return Err(error(400, "Stripe takes form-encoded bodies"));
            }
            let Some(key) = key.clone() else {
                return Err(error(400, "every POST must carry an Idempotency-Key"));
            };
            if let Some(failures) = ledger.fail_first.get_mut(&path) {
                if !failures.is_empty() {
                    let status = failures.remove(0);
                    return Err(error(status, "failing on purpose"));
                }
            }
            if let Some(first) = ledger.answers.get(&key) {
                return Ok(first.clone());
            }
            let need = |name: &str| {
                fields
                    .get(name)
                    .cloned()
                    .ok_or_else(|| error(400, &format!("Missing required param: {name}.")))
            };
            ledger.created += 1;
            let n = ledger.created;
            let body = match path.as_str() {
                "/v1/customers" => json!({"id": format!("cus_test_{n}"), "object": "customer",
                    "email": fields.get("email"), "metadata": {"organization_id": need("metadata[organization_id]")?}}),
                "/v1/checkout/sessions" => {
                    if fields.get("mode").map(String::as_str) != Some("subscription") {
                        return Err(error(400, "mode must be subscription"));
                    }
                    for name in [
                        "customer",
                        "client_reference_id",
                        "line_items[0][price]",
                        "line_items[0][quantity]",
                        "success_url",
                        "cancel_url",
                    ] {
                        need(name)?;
                    }
                    json!({"id": format!("cs_test_{n}"), "object": "checkout.session",
                        "url": format!("https://checkout.stripe.test/c/pay/cs_test_{n}"),
                        "customer": fields["customer"], "client_reference_id": fields["client_reference_id"]})
                }
                "/v1/billing_portal/sessions" => {
                    need("customer")?;
                    need("return_url")?;
                    json!({"id": format!("bps_test_{n}"), "object": "billing_portal.session",
                        "url": format!("https://billing.stripe.test/p/session/bps_test_{n}")})
                }
                "/v1/billing/meter_events" => {
                    let identifier = need("identifier")?;
                    let value: i64 = need("payload[value]")?
                        .parse()
                        .map_err(|_| error(400, "payload[value] must be a whole number"))?;
                    need("payload[stripe_customer_id]")?;
                    need("event_name")?;
                    need("timestamp")?;
                    if ledger.meter_events.contains_key(&identifier) {
                        return Err(error(400, "An event already exists with identifier"));
                    }
                    ledger.meter_events.insert(identifier.clone(), value);
                    json!({"object": "billing.meter_event", "identifier": identifier,
                        "event_name": fields["event_name"], "payload": {"value": value.to_string()}})
                }
                _ => return Err(error(404, "Unrecognized request URL")),
            };
            ledger.answers.insert(key, body.clone());
            Ok(body)
        })();
        let response = match answer {
            Ok(body) => ResponseTemplate::new(200).set_body_json(body),
            Err((status, message)) => {
                seen.status = status;
                let body = json!({"error": {"type": "invalid_request_error", "message": message}});
                ResponseTemplate::new(status).set_body_json(body)
            }
        };
        ledger.requests.push(seen);
        response
    }
}

impl StripeStub {
    pub async fn start() -> StripeStub {
        let server = MockServer::start().await;
        let ledger = Arc::new(Mutex::new(StripeLedger::default()));
        Mock::given(wiremock::matchers::method("POST"))
            .respond_with(Responder(ledger.clone()))
            .mount(&server)
            .await;
        StripeStub {
            server: Arc::new(server),
            ledger,
        }
    }

    /// Points the service's Stripe client here, with a key (nothing sandboxed).
    pub fn configure(&self, config: &mut Config) {
        config.stripe = ProviderConfig {
            base_url: self.server.uri(),
            api_key: Some(Secret::new(STRIPE_KEY)),
        };
    }

    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("STRIPE_BASE_URL".into(), self.server.uri()),
            ("STRIPE_SECRET_KEY".into(), STRIPE_KEY.into()),
            ("STRIPE_WEBHOOK_SECRET".into(), STRIPE_SECRET.into()),
        ]
    }

    pub fn fail_first(&self, path: &str, statuses: &[u16]) {
        self.ledger
            .lock()
            .unwrap()
            .fail_first
            .insert(path.to_string(), statuses.to_vec());
    }

    pub fn requests_to(&self, path: &str) -> Vec<Seen> {
        self.ledger
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }

    pub fn meter_events(&self) -> BTreeMap<String, i64> {
        self.ledger.lock().unwrap().meter_events.clone()
    }
}

/// Signs `event` as Stripe does and delivers it to `base`'s Stripe webhook.
pub async fn deliver(base: &str, event: &Value) -> u16 {
    let body = event.to_string();
    let header = wire::signature::stripe_signature_header(
        STRIPE_SECRET,
        chrono::Utc::now().timestamp(),
        body.as_bytes(),
    );
    reqwest::Client::new()
        .post(format!("{base}/api/webhooks/stripe"))
        .header("content-type", "application/json")
        .header("stripe-signature", header)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Stripe's side of a completed checkout: the session completes and the subscription it
/// created is announced, active on `price`, for the period `[start, end)` (epoch seconds).
/// Returns the subscription id.
pub async fn complete_checkout(
    (base, org): (&str, &str),
    session: &str,
    customer: &str,
    plan: &str,
    price: &str,
    (start, end): (i64, i64),
) -> String {
    let subscription = format!("sub_for_{session}");
    let now = chrono::Utc::now().timestamp();
    let completed = json!({
        "id": format!("evt_{session}_completed"), "object": "event", "type": "checkout.session.completed",
        "created": now, "livemode": false,
        "data": {"object": {"id": session, "object": "checkout.session", "mode": "subscription",
            "customer": customer, "subscription": subscription, "client_reference_id": org,
            "metadata": {"organization_id": org, "plan": plan}, "payment_status": "paid", "status": "complete"}}
    });
    assert_eq!(deliver(base, &completed).await, 200);
    let created = json!({
        "id": format!("evt_{session}_subscription"), "object": "event", "type": "customer.subscription.created",
        "created": now + 1, "livemode": false,
        "data": {"object": {"id": subscription, "object": "subscription", "customer": customer,
            "status": "active", "cancel_at_period_end": false,
            "metadata": {"organization_id": org, "plan": plan},
            "items": {"object": "list", "data": [{"id": format!("si_{session}"), "object": "subscription_item",
                "price": {"id": price, "object": "price", "recurring": {"interval": "month"}},
                "current_period_start": start, "current_period_end": end}]}}}
    });
    assert_eq!(deliver(base, &created).await, 200);
    subscription
}
