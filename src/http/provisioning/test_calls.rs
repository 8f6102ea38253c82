//! Test calls that ring: VAPI's create-call API places a call from one of the organization's
//! numbers, answered by an assistant, to the number the caller gave; the call then arrives
//! through the webhooks like any other.

use aggregates::organization::Organization;

use super::{provider_error, vapi};
use crate::http::error::ApiError;
use crate::http::query::principal::Principal;
use crate::state::AppState;

/// A placed test call: VAPI's call id, and whether VAPI ran in sandbox mode.
pub struct Placed {
    pub call_id: String,
    pub sandbox: bool,
}

/// Rings `customer` from our number `phone_number_id` with our assistant `assistant_id`;
/// 409 `not_ready` when either is not in VAPI yet.
pub async fn ring(
    state: &AppState,
    principal: &Principal,
    org: &Organization,
    assistant_id: &str,
    phone_number_id: &str,
    customer: &str,
) -> Result<Placed, ApiError> {
    let assistant = org
        .live_assistant(assistant_id)
        .and_then(|a| a.vapi_assistant_id.clone())
        .ok_or_else(|| not_ready("the assistant is not synced to VAPI"))?;
    let number = org
        .live_phone_number(phone_number_id)
        .and_then(|p| p.vapi_phone_number_id.clone())
        .ok_or_else(|| not_ready("the number is not imported into VAPI"))?;
    let placed = vapi(state)
        .create_call(&assistant, &number, customer, &principal.org())
        .await
        .map_err(provider_error)?;
    Ok(Placed {
        call_id: placed.id,
        sandbox: placed.sandbox,
    })
}

/// The number an assistant's test call comes from: the one asked for, else the first live
/// number linked to the assistant and imported into VAPI.
pub fn number_for(
    org: &Organization,
    assistant_id: &str,
    asked: Option<&str>,
) -> Result<String, ApiError> {
    if let Some(asked) = asked {
        return org
            .live_phone_number(asked)
            .map(|_| asked.to_string())
            .ok_or_else(|| ApiError::not_found("phone_number_not_found", "no such phone number"));
    }
    org.phone_numbers
        .iter()
        .filter(|(_, p)| !p.released && p.vapi_phone_number_id.is_some())
        .find(|(_, p)| p.assistant_id.as_deref() == Some(assistant_id))
        .map(|(id, _)| id.clone())
        .ok_or_else(|| not_ready("no number imported into VAPI is linked to the assistant"))
}

fn not_ready(why: &str) -> ApiError {
    ApiError::conflict("not_ready", format!("no test call can be placed: {why}"))
}
