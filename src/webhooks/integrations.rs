//! `POST /api/webhooks/integrations/{provider}`: events a customer's own systems (Zapier, a
//! CRM) send us, signed by the Standard Webhooks scheme with the signing secret of the
//! organization's connected `webhook` or `zapier` integration, and named by the
//! `X-CallFlex-Organization` header. Idempotent by `webhook-id`: a replay gets the first
//! answer. Event types (`{"type", "data"}`):
//! - `contact.upsert` `{phone_number, name?, email?, notes?}`: create or update the contact;
//! - `contact.note` `{phone_number, note}`: append a note to the contact (created if new);
//! - `callback.request` `{phone_number, name?, reason, preferred_time?}`: the request is noted
//!   on the contact (created if new), where the dashboard and the assistant see it.

use chrono::Utc;
use serde_json::{json, Value};
use uuid::Uuid;

use super::deliveries::Delivery;
use super::Outcome;
use crate::app::{contacts, AppError, Caller};
use crate::state::AppState;

/// The types this endpoint turns into commands.
pub const EVENT_TYPES: [&str; 3] = ["contact.upsert", "contact.note", "callback.request"];
const PROVIDERS: [&str; 2] = ["webhook", "zapier"];

pub struct Headers<'a> {
    pub organization: Option<&'a str>,
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

fn unauthorized(message: &str) -> AppError {
    AppError::unauthorized("invalid_signature", message)
}

fn text(data: &Value, key: &str) -> Option<String> {
    data.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

pub async fn ingest(
    state: &AppState,
    provider: &str,
    headers: &Headers<'_>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Outcome, AppError> {
    if !PROVIDERS.contains(&provider) {
        return Err(AppError::not_found(
            "unknown_provider",
            "inbound events are accepted for the webhook and zapier integrations",
        ));
    }
    // Every refusal before the signature is checked looks the same: nothing about which
    // organizations or integrations exist is given away.
    let organization = headers
        .organization
        .and_then(|o| Uuid::parse_str(o.trim()).ok())
        .ok_or_else(|| unauthorized("X-CallFlex-Organization must name the organization"))?;
    let (org, _) = state.organizations.load(&organization.to_string()).await?;
    let endpoint = org
        .webhook_endpoint_details
        .get(&format!("integration:{provider}"))
        .filter(|_| org.is_live() && org.integrations.get(provider).copied().unwrap_or(false))
        .ok_or_else(|| unauthorized("the signature does not match"))?;
    let secret = state
        .secrets
        .open(&endpoint.secret)
        .map_err(AppError::internal)?;
    wire::standard_webhooks::verify(
        &secret,
        headers.id,
        headers.timestamp,
        headers.signature,
        body,
        Utc::now().timestamp(),
    )
    .map_err(|err| unauthorized(&format!("Standard Webhooks signature check failed: {err}")))?;
    let id = headers.id.unwrap_or_default().trim();
    let ledger_provider = format!("integration:{provider}");
    let key = format!("{organization}:{id}");
    if let Some(previous) = state.ledger.find(&ledger_provider, &key).await? {
        return Ok(previous);
    }
    let event: Value = serde_json::from_slice(body)
        .map_err(|e| AppError::bad_request("invalid_payload", format!("body is not JSON: {e}")))?;
    let kind = event["type"].as_str().unwrap_or_default().to_string();
    if !EVENT_TYPES.contains(&kind.as_str()) {
        return Err(AppError::invalid(
            "unknown_event_type",
            format!(
                "unknown event type `{kind}`; known: {}",
                EVENT_TYPES.join(", ")
            ),
        )
        .with_details(json!({ "known": EVENT_TYPES })));
    }
    let data = &event["data"];
    let phone = text(data, "phone_number")
        .ok_or_else(|| AppError::invalid("invalid_input", "data.phone_number is required"))?;
    let note = match kind.as_str() {
        "contact.upsert" => text(data, "notes"),
        "contact.note" => Some(
            text(data, "note")
                .ok_or_else(|| AppError::invalid("invalid_input", "data.note is required"))?,
        ),
        _ => {
            let reason = text(data, "reason")
                .ok_or_else(|| AppError::invalid("invalid_input", "data.reason is required"))?;
            let when = text(data, "preferred_time")
                .map(|t| format!(" (preferred: {t})"))
                .unwrap_or_default();
            Some(format!("Callback requested via {provider}: {reason}{when}"))
        }
    };
    for (field, value) in [("name", text(data, "name")), ("email", text(data, "email"))] {
        if value.as_ref().is_some_and(|v| v.chars().count() > 500) {
            return Err(AppError::invalid(
                "invalid_input",
                format!("data.{field} is too long"),
            ));
        }
    }
    if note.as_ref().is_some_and(|n| n.chars().count() > 2_000) {
        return Err(AppError::invalid("invalid_input", "the note is too long"));
    }
    let caller = Caller::new(format!("provider:integration:{provider}"), organization);
    let written = contacts::upsert(
        state,
        &caller,
        contacts::Upsert {
            phone_number: &phone,
            name: text(data, "name"),
            email: text(data, "email"),
            note,
        },
        Some(&format!("inbound:{provider}:{id}")),
    )
    .await?;
    let mut outcome = Outcome::ok(json!({
        "received": true,
        "type": kind,
        "contact_id": written.contact_id,
        "created": written.created,
    }));
    outcome.last_position = written.position;
    outcome.first_position = written.position;
    let outcome = outcome.with_position();
    state
        .ledger
        .record(
            Delivery {
                provider: &ledger_provider,
                key: &key,
                organization_id: Some(organization.to_string()),
                message_type: Some(kind),
                content_type,
                body,
            },
            &outcome,
        )
        .await?;
    Ok(outcome)
}
