//! Buying a phone number: a small saga on the Organization aggregate, called by
//! `POST /phone-numbers` and by onboarding alike.
//!
//! 1. `RequestPhoneNumberPurchase` records the intent (id chosen by the caller: derived from
//!    an `Idempotency-Key`, or the onboarding's own) BEFORE Twilio is called; a second
//!    request with the same id while it runs gets 409 `purchase_in_progress`, one after it
//!    completed gets the number bought the first time.
//! 2. Twilio buys the number (`VoiceUrl` → VAPI, `StatusCallback` → our webhook).
//! 3. VAPI imports it, linked to the assistant's VAPI id.
//! 4. `ProvisionPhoneNumber` records the outcome (phone number id = purchase id).
//!
//! A failure at 2 or 3 records `FailPhoneNumberPurchase` (a number bought at 2 is released
//! again first): nothing is half provisioned, and a retry with the same id starts over.
//! An area-code purchase records the number it picked (`ChoosePurchaseNumber`) before step 2.
//! A purchase still pending after `PROVISIONING_TIMEOUT_SECS` was left by a request that
//! crashed or hung: a retry takes it over (`ResumePhoneNumberPurchase`, which only one retry
//! wins), asks Twilio whether the number is on the account and either finishes steps 3–4
//! with it or records the abandonment and starts again. It never buys without looking first.

use aggregates::organization::{
    is_stale, Organization, OrganizationCommand, PhoneNumberPurchase, PhoneNumberState,
    PurchaseStatus,
};
use serde_json::json;

use super::{organizations, AppError, Caller};
use crate::providers::twilio::{IncomingNumber, NumberConfig, Twilio};
use crate::providers::vapi::{PhoneNumberImport, Vapi};
use crate::state::AppState;

/// What to buy.
#[derive(Debug, Clone, PartialEq)]
pub struct Purchase {
    /// The purchase's id (and the bought number's): the same id never buys twice.
    pub id: String,
    /// A specific E.164 number (from a search) ...
    pub number: Option<String>,
    /// ... or any number in this area code.
    pub area_code: Option<String>,
    /// The assistant that answers it (must be synced to VAPI).
    pub assistant_id: Option<String>,
    pub friendly_name: Option<String>,
}

/// The number, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Bought {
    pub number: PhoneNumberState,
    pub position: i64,
    pub sandbox: bool,
    /// A retry of a purchase that had completed: nothing was bought now.
    pub duplicate: bool,
    /// A purchase left behind by a crash, finished now.
    pub recovered: bool,
}

pub fn vapi(state: &AppState) -> Vapi {
    Vapi::new(state.config.vapi.clone(), state.store.clone())
}

pub fn twilio(state: &AppState) -> Twilio {
    Twilio::new(&state.config, state.store.clone())
}

async fn execute(
    state: &AppState,
    caller: &Caller,
    command: OrganizationCommand,
) -> Result<(i64, Organization), AppError> {
    let done = organizations::execute_as(state, caller, "provisioning", None, command).await?;
    Ok((done.result.last_position, done.state))
}

/// The VAPI id of a live, synced assistant (404 / 409 otherwise).
pub fn synced_assistant(org: &Organization, id: &str) -> Result<String, AppError> {
    let assistant = org
        .live_assistant(id)
        .ok_or_else(|| AppError::not_found("assistant_not_found", "no such assistant"))?;
    assistant.vapi_assistant_id.clone().ok_or_else(|| {
        AppError::conflict(
            "assistant_not_synced",
            "sync the assistant to VAPI first (POST /assistants/{id}/sync)",
        )
        .with_details(json!({ "assistant_id": id }))
    })
}

/// Records the failure of purchase `id`, then returns `error`.
async fn fail(
    state: &AppState,
    caller: &Caller,
    id: &str,
    stage: &str,
    provider_sid: Option<String>,
    error: AppError,
) -> AppError {
    let reason = match error.details.as_ref().and_then(|d| d.get("reason")) {
        Some(why) => format!("{}: {why}", error.message),
        None => error.message.clone(),
    };
    let command = OrganizationCommand::FailPhoneNumberPurchase {
        purchase_id: id.to_string(),
        stage: stage.to_string(),
        reason,
        provider_sid,
        actor: caller.actor.clone(),
    };
    if let Err(e) = execute(state, caller, command).await {
        tracing::error!(purchase = id, code = %e.code, "purchase failure not recorded");
    }
    error
}

/// Steps 3 and 4: link the bought number in VAPI and record it (a VAPI failure releases the
/// number again and records the failure).
async fn link_and_record(
    state: &AppState,
    caller: &Caller,
    twilio: &Twilio,
    purchase: &Purchase,
    vapi_assistant: Option<String>,
    bought: IncomingNumber,
    recovered: bool,
) -> Result<Bought, AppError> {
    let org_id = caller.organization_id.to_string();
    let import = PhoneNumberImport {
        number: bought.phone_number.clone(),
        twilio_account_sid: twilio.account_sid().to_string(),
        twilio_auth_token: twilio.auth_token().unwrap_or_default().to_string(),
        assistant_id: vapi_assistant,
        name: purchase.friendly_name.clone(),
        server_url: Some(super::assistants::server_url(state, &org_id)),
    };
    let linked = match vapi(state).create_phone_number(&import, &org_id).await {
        Ok(l) => l,
        Err(e) => {
            // Compensate: give the number back, so nothing is half provisioned.
            let unreleased = match twilio.release(&bought.sid, &org_id).await {
                Ok(()) => None,
                Err(release) => {
                    tracing::error!(sid = %bought.sid, error = %release,
                        "a bought number could not be released after VAPI failed");
                    Some(bought.sid.clone())
                }
            };
            return Err(fail(state, caller, &purchase.id, "vapi", unreleased, e.into()).await);
        }
    };
    let (position, org) = execute(
        state,
        caller,
        OrganizationCommand::ProvisionPhoneNumber {
            phone_number_id: purchase.id.clone(),
            number: bought.phone_number.clone(),
            provider_sid: bought.sid.clone(),
            assistant_id: purchase.assistant_id.clone(),
            vapi_phone_number_id: Some(linked.id),
            actor: caller.actor.clone(),
        },
    )
    .await?;
    let mut number = org
        .phone_numbers
        .get(&purchase.id)
        .cloned()
        .ok_or_else(|| AppError::internal("the provisioned number is not in the state"))?;
    if number.friendly_name.is_none() {
        number.friendly_name = purchase.friendly_name.clone().or(bought.friendly_name);
    }
    Ok(Bought {
        number,
        position,
        sandbox: bought.sandbox || linked.sandbox,
        duplicate: false,
        recovered,
    })
}

/// How long a pending purchase has left before a retry may take it over (`None`: stale).
pub fn in_progress_for(state: &AppState, purchase: &PhoneNumberPurchase) -> Option<i64> {
    let now = chrono::Utc::now();
    let timeout = state.config.provisioning_timeout_secs;
    if is_stale(purchase.requested_at, now, timeout) {
        return None;
    }
    let waited = purchase.requested_at.map_or(0, |t| (now - t).num_seconds());
    Some((timeout - waited).max(1))
}

/// A retry found purchase `id` still pending. Younger than `PROVISIONING_TIMEOUT_SECS`: 409
/// `purchase_in_progress`. Older: the request that recorded it crashed or hung, so this
/// retry takes it over (only one retry can) and asks Twilio whether the number was bought.
/// Returns the bought number to finish with, or `None` after recording the abandonment (the
/// caller then starts the purchase again). Never buys anything itself.
async fn take_over(
    state: &AppState,
    caller: &Caller,
    twilio: &Twilio,
    id: &str,
    purchase: &PhoneNumberPurchase,
) -> Result<Option<IncomingNumber>, AppError> {
    if let Some(left) = in_progress_for(state, purchase) {
        return Err(AppError::conflict(
            "purchase_in_progress",
            "a purchase with this Idempotency-Key is still in progress",
        )
        .with_details(json!({ "retry_after_seconds": left })));
    }
    let org = caller.organization_id.to_string();
    // Read-only, so concurrent retries may both ask; only one wins the take-over below.
    let found = match &purchase.number {
        Some(number) => twilio.find_incoming(number, &org).await?,
        // No number was chosen yet, so nothing was bought.
        None => None,
    };
    let resume = OrganizationCommand::ResumePhoneNumberPurchase {
        purchase_id: id.to_string(),
        at: chrono::Utc::now(),
        stale_after_secs: state.config.provisioning_timeout_secs,
        actor: caller.actor.clone(),
    };
    execute(state, caller, resume).await?;
    if found.is_some() {
        return Ok(found);
    }
    let abandon = OrganizationCommand::AbandonPhoneNumberPurchase {
        purchase_id: id.to_string(),
        reason: "the request timed out and Twilio has no such number".to_string(),
        actor: caller.actor.clone(),
    };
    execute(state, caller, abandon).await?;
    Ok(None)
}

/// Buys, links and records a number (see the module's saga).
pub async fn buy(
    state: &AppState,
    caller: &Caller,
    purchase: Purchase,
) -> Result<Bought, AppError> {
    if purchase.number.is_none() && purchase.area_code.is_none() {
        return Err(AppError::invalid(
            "invalid_input",
            "give phone_number (from a search) or area_code",
        )
        .with_details(json!({ "field": "area_code" })));
    }
    let org = organizations::load(state, caller).await?;
    let twilio = twilio(state);
    // A retry of a request that already bought its number gets that number.
    if let Some(p) = org.phone_numbers.get(&purchase.id) {
        return Ok(Bought {
            number: p.clone(),
            position: 0,
            sandbox: twilio.sandbox(),
            duplicate: true,
            recovered: false,
        });
    }
    let vapi_assistant = purchase
        .assistant_id
        .as_deref()
        .map(|id| synced_assistant(&org, id))
        .transpose()?;
    let id = purchase.id.clone();
    let pending = org
        .purchases
        .get(&id)
        .filter(|p| p.status == PurchaseStatus::Pending);
    if let Some(pending) = pending {
        // Still running, or left behind by a request that crashed or hung?
        if let Some(bought) = take_over(state, caller, &twilio, &id, pending).await? {
            let assistant_id = pending.assistant_id.clone();
            let vapi_assistant = assistant_id
                .as_deref()
                .map(|a| synced_assistant(&org, a))
                .transpose()?;
            let resumed = Purchase {
                assistant_id,
                ..purchase
            };
            return link_and_record(
                state,
                caller,
                &twilio,
                &resumed,
                vapi_assistant,
                bought,
                true,
            )
            .await;
        }
    }
    // 1. The intent, before any provider is called.
    let intent = OrganizationCommand::RequestPhoneNumberPurchase {
        purchase_id: id.clone(),
        number: purchase.number.clone(),
        area_code: purchase.area_code.clone(),
        assistant_id: purchase.assistant_id.clone(),
        at: chrono::Utc::now(),
        actor: caller.actor.clone(),
    };
    execute(state, caller, intent).await?;
    let org_id = caller.organization_id.to_string();
    let number = match (&purchase.number, &purchase.area_code) {
        (Some(n), _) => n.clone(),
        (None, Some(code)) => {
            let n = match twilio.search(code, 1, &org_id).await {
                Ok((found, _)) => match found.into_iter().next() {
                    Some(n) => n.phone_number,
                    None => {
                        let err = AppError::invalid(
                            "no_numbers_available",
                            format!("Twilio has no numbers available in area code {code}"),
                        );
                        return Err(fail(state, caller, &id, "search", None, err).await);
                    }
                },
                Err(e) => return Err(fail(state, caller, &id, "search", None, e.into()).await),
            };
            // Recorded before buying, so a retry after a crash knows what to look for.
            let chosen = OrganizationCommand::ChoosePurchaseNumber {
                purchase_id: id.clone(),
                number: n.clone(),
                actor: caller.actor.clone(),
            };
            execute(state, caller, chosen).await?;
            n
        }
        (None, None) => return Err(AppError::internal("no number and no area code")),
    };
    // 2. Buy.
    let config = NumberConfig {
        voice_url: state.config.vapi_phone_number_url.clone(),
        status_callback: format!("{}/api/webhooks/twilio/status", state.config.public_url),
        friendly_name: purchase.friendly_name.clone(),
    };
    let bought = match twilio.buy(&number, &config, &org_id).await {
        Ok(b) => b,
        Err(e) => return Err(fail(state, caller, &id, "twilio", None, e.into()).await),
    };
    link_and_record(
        state,
        caller,
        &twilio,
        &purchase,
        vapi_assistant,
        bought,
        false,
    )
    .await
}
