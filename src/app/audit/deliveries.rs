//! The provider deliveries that built a call, as the ledger kept them: when, from which
//! provider, what type, the answer we gave, where its events landed, and the raw body
//! (personal data masked for the auditor role).

use serde_json::Value;

use super::{stream, View};
use crate::app::{AppError, Caller};
use crate::state::AppState;
use crate::webhooks::stored::{self, StoredDelivery};

/// One delivery as the audit shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditedDelivery {
    pub delivery: StoredDelivery,
    /// The raw body as JSON when it is JSON (else its text), as this viewer may see it.
    pub body: Value,
    /// The answer we gave, as JSON.
    pub response: Value,
}

/// Every delivery whose events are on the caller's call `call_id`, in the order received;
/// 404 like the call's history when it is not the caller's.
pub async fn deliveries(
    state: &AppState,
    caller: &Caller,
    view: View,
    call_id: &str,
) -> Result<Vec<AuditedDelivery>, AppError> {
    stream(state, caller, view, "call", call_id, 0, 1).await?;
    let found = stored::of_call(&state.store, call_id).await?;
    Ok(found
        .into_iter()
        .map(|delivery| {
            let body = parse(&delivery.body, delivery.content_type.as_deref());
            AuditedDelivery {
                body: view.show(&body),
                // Status 0: kept with its events, the service stopped before our answer
                // was recorded.
                response: if delivery.status_code == 0 {
                    Value::Null
                } else {
                    serde_json::from_str(&delivery.response)
                        .unwrap_or_else(|_| Value::String(delivery.response.clone()))
                },
                delivery,
            }
        })
        .collect())
}

/// A JSON body parsed, a form body as an object of its fields, anything else as text.
fn parse(body: &str, content_type: Option<&str>) -> Value {
    if content_type.is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")) {
        let fields: serde_json::Map<String, Value> = url::form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        return Value::Object(fields);
    }
    serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()))
}
