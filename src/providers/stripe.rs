//! Stripe REST (form-encoded, Bearer `STRIPE_SECRET_KEY`): customers, Checkout Sessions in
//! subscription mode, Billing Portal sessions and Billing Meter events. Every call here
//! creates something, so every call carries an `Idempotency-Key` (Stripe keeps keys at least
//! 24 h and answers a repeat with the first result); a meter event also carries an
//! `identifier` Stripe deduplicates, so a retried report never bills twice.
//!
//! Without a key every call is recorded (sandbox) and answered with a realistic fake object.
//! async-stripe was measured and not used (ARCHITECTURE.md, "Dependencies").

use serde_json::Value;

use super::{Auth, Body, HttpClient, ProviderError, Request};
use crate::config::ProviderConfig;

/// What Stripe created: its id, and the URL for sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub id: String,
    pub url: Option<String>,
    pub sandbox: bool,
}

/// A Checkout Session to create.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkout<'a> {
    pub customer_id: &'a str,
    pub price_id: &'a str,
    pub plan_id: &'a str,
    pub organization_id: &'a str,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
}

/// One Billing Meter event.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterEvent<'a> {
    pub event_name: &'a str,
    pub customer_id: &'a str,
    pub value: i64,
    /// Unique per report: Stripe drops a second event with the same identifier.
    pub identifier: &'a str,
    /// Epoch seconds the usage happened at.
    pub timestamp: i64,
}

#[derive(Clone)]
pub struct Stripe {
    client: HttpClient,
    /// Where sandbox sessions "redirect" (our own URL, so nothing leaves the machine).
    public_url: String,
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Stripe {
    pub fn new(config: ProviderConfig, store: eventlog::EventStore, public_url: &str) -> Self {
        let auth = config
            .api_key
            .as_ref()
            .map(|k| Auth::Bearer(k.expose().to_string()))
            .unwrap_or(Auth::None);
        Self {
            client: HttpClient::new("stripe", config, auth, store),
            public_url: public_url.trim_end_matches('/').to_string(),
        }
    }

    pub fn sandbox(&self) -> bool {
        self.client.sandbox()
    }

    /// Single attempt per call (a process's retry policy does the retrying).
    pub fn single_attempt(mut self) -> Self {
        self.client = self.client.with_attempts(1);
        self
    }

    async fn post(
        &self,
        path: &str,
        form: Vec<(String, String)>,
        key: &str,
        org: &str,
    ) -> Result<Option<Value>, ProviderError> {
        let answer = self
            .client
            .send(Request {
                method: reqwest::Method::POST,
                path: path.to_string(),
                body: Body::Form(form),
                idempotency_key: Some(key.to_string()),
                organization_id: Some(org.to_string()),
            })
            .await?;
        Ok(answer.map(|a| a.body))
    }

    fn created(
        &self,
        answer: Option<Value>,
        prefix: &str,
        key: &str,
    ) -> Result<Created, ProviderError> {
        match answer {
            Some(body) => match body["id"].as_str().filter(|id| !id.is_empty()) {
                Some(id) => Ok(Created {
                    id: id.to_string(),
                    url: body["url"].as_str().map(str::to_string),
                    sandbox: false,
                }),
                None => Err(ProviderError::Unavailable {
                    provider: "stripe",
                    reason: format!("Stripe answered without an id: {body}"),
                    retry_after: None,
                }),
            },
            // The fake id is derived from the idempotency key, so a sandboxed retry answers
            // the same object, as Stripe would.
            None => Ok(Created {
                id: format!(
                    "{prefix}_sandbox_{}",
                    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, key.as_bytes()).simple()
                ),
                url: None,
                sandbox: true,
            }),
        }
    }

    /// `POST /v1/customers` for an organization.
    pub async fn create_customer(
        &self,
        organization_id: &str,
        email: &str,
        name: &str,
        key: &str,
    ) -> Result<Created, ProviderError> {
        let form = pairs(&[
            ("email", email),
            ("name", name),
            ("metadata[organization_id]", organization_id),
        ]);
        let answer = self
            .post("/v1/customers", form, key, organization_id)
            .await?;
        self.created(answer, "cus", key)
    }

    /// `POST /v1/checkout/sessions` in subscription mode.
    pub async fn create_checkout(
        &self,
        checkout: &Checkout<'_>,
        key: &str,
    ) -> Result<Created, ProviderError> {
        let form = pairs(&[
            ("mode", "subscription"),
            ("customer", checkout.customer_id),
            ("client_reference_id", checkout.organization_id),
            ("line_items[0][price]", checkout.price_id),
            ("line_items[0][quantity]", "1"),
            ("success_url", checkout.success_url),
            ("cancel_url", checkout.cancel_url),
            ("metadata[organization_id]", checkout.organization_id),
            ("metadata[plan]", checkout.plan_id),
            (
                "subscription_data[metadata][organization_id]",
                checkout.organization_id,
            ),
            ("subscription_data[metadata][plan]", checkout.plan_id),
        ]);
        let answer = self
            .post("/v1/checkout/sessions", form, key, checkout.organization_id)
            .await?;
        let mut created = self.created(answer, "cs", key)?;
        if created.sandbox {
            created.url = Some(format!(
                "{}/billing/sandbox-checkout?session={}",
                self.public_url, created.id
            ));
        }
        Ok(created)
    }

    /// `POST /v1/billing_portal/sessions`.
    pub async fn create_portal(
        &self,
        customer_id: &str,
        return_url: &str,
        organization_id: &str,
        key: &str,
    ) -> Result<Created, ProviderError> {
        let form = pairs(&[("customer", customer_id), ("return_url", return_url)]);
        let answer = self
            .post("/v1/billing_portal/sessions", form, key, organization_id)
            .await?;
        let mut created = self.created(answer, "bps", key)?;
        if created.sandbox {
            created.url = Some(format!(
                "{}/billing/sandbox-portal?session={}",
                self.public_url, created.id
            ));
        }
        Ok(created)
    }

    /// `POST /v1/billing/meter_events`.
    pub async fn report_meter_event(
        &self,
        event: &MeterEvent<'_>,
        organization_id: &str,
    ) -> Result<Created, ProviderError> {
        let value = event.value.to_string();
        let timestamp = event.timestamp.to_string();
        let form = pairs(&[
            ("event_name", event.event_name),
            ("payload[stripe_customer_id]", event.customer_id),
            ("payload[value]", &value),
            ("identifier", event.identifier),
            ("timestamp", &timestamp),
        ]);
        let key = format!("meter:{}", event.identifier);
        let answer = self
            .post("/v1/billing/meter_events", form, &key, organization_id)
            .await?;
        // A meter event's answer carries its identifier, not an `id`.
        match answer {
            Some(body) => Ok(Created {
                id: body["identifier"]
                    .as_str()
                    .unwrap_or(event.identifier)
                    .to_string(),
                url: None,
                sandbox: false,
            }),
            None => Ok(Created {
                id: event.identifier.to_string(),
                url: None,
                sandbox: true,
            }),
        }
    }
}
