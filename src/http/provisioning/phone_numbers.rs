//! `POST /api/v1/phone-numbers/search`, `GET/POST /api/v1/phone-numbers`,
//! `GET/PATCH/DELETE /api/v1/phone-numbers/{id}` and `POST /api/v1/phone-numbers/{id}/test`.
//!
//! Buying is a small saga on the Organization aggregate:
//! 1. `RequestPhoneNumberPurchase` records the intent (id derived from `Idempotency-Key`)
//!    BEFORE Twilio is called; a second request with the same key while it runs gets 409
//!    `purchase_in_progress`, one after it completed gets the number bought the first time.
//! 2. Twilio buys the number (`VoiceUrl` → VAPI, `StatusCallback` → our webhook).
//! 3. VAPI imports it, linked to the assistant's VAPI id.
//! 4. `ProvisionPhoneNumber` records the outcome (phone number id = purchase id).
//!
//! A failure at 2 or 3 records `FailPhoneNumberPurchase` (a number bought at 2 is released
//! again first) and answers 502/503: nothing is half provisioned, and a retry with the same
//! key starts over.
//!
//! An area-code purchase records the number it picked (`ChoosePurchaseNumber`) before step 2.
//! A purchase still pending after `PROVISIONING_TIMEOUT_SECS` was left by a request that
//! crashed or hung: a retry takes it over (`ResumePhoneNumberPurchase`, which only one retry
//! wins), asks Twilio whether the number is on the account (`GET IncomingPhoneNumbers.json?
//! PhoneNumber=`) and either finishes steps 3–4 with it or records the abandonment
//! (`AbandonPhoneNumberPurchase`) and starts again. It never buys without looking first.

use std::sync::Arc;

use aggregates::organization::{Organization, OrganizationCommand, PhoneNumberState};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::json;
use uuid::Uuid;

use super::{begin, execute, idempotency_key, provider_error, twilio, vapi};
use crate::app::phone_numbers as app;
use crate::http::error::ApiError;
use crate::http::query::principal::OrganizationHeader;
use crate::http::ApiTags;
use crate::providers::ProviderError;
use crate::state::AppState;

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PhoneNumber {
    pub id: String,
    /// E.164.
    pub number: String,
    pub friendly_name: Option<String>,
    /// The assistant answering calls to it.
    pub assistant_id: Option<String>,
    /// Twilio's IncomingPhoneNumber sid (`PN…`).
    pub twilio_sid: String,
    /// The number's id in VAPI.
    pub vapi_phone_number_id: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PhoneNumberList {
    pub data: Vec<PhoneNumber>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PhoneNumberResponse {
    pub data: PhoneNumber,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PhoneNumberWritten {
    pub data: PhoneNumber,
    /// The log position the command wrote.
    pub position: i64,
    /// True when the providers ran in sandbox mode (fake ids, nothing bought).
    pub sandbox: bool,
    /// True when this answers a retry: the number was bought by the first request.
    pub duplicate: bool,
    /// True when this retry found in Twilio the number a crashed request had bought, and
    /// finished the purchase without buying again.
    pub recovered: bool,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NumberSearch {
    /// US area code (3 digits).
    pub area_code: String,
    /// 1 to 30 (default 10).
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AvailablePhoneNumber {
    pub phone_number: String,
    pub friendly_name: String,
    pub locality: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
    pub voice: bool,
    pub sms: bool,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NumberSearchResult {
    pub data: Vec<AvailablePhoneNumber>,
    /// True when Twilio runs in sandbox mode (the numbers are made up).
    pub sandbox: bool,
}

/// A number to buy: a specific `phone_number` (from a search) or any in `area_code`.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NewPhoneNumber {
    pub area_code: Option<String>,
    pub phone_number: Option<String>,
    /// The (synced) assistant that answers it.
    pub assistant_id: Option<String>,
    pub friendly_name: Option<String>,
}

/// `assistant_id: null` unlinks; absent fields are unchanged.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PhoneNumberChanges {
    pub assistant_id: MaybeUndefined<String>,
    pub friendly_name: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PhoneNumberTestRequest {
    /// Send a test SMS from the number to this one (E.164).
    pub to: Option<String>,
    /// Ring this number (E.164): VAPI places a call from the number, answered by its
    /// assistant; the call then arrives through the webhooks like any other.
    pub call: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PhoneNumberTest {
    /// True when calls to the number reach a synced assistant.
    pub ready: bool,
    pub problems: Vec<String>,
    /// The test SMS's Twilio sid, when `to` was given.
    pub message_sid: Option<String>,
    /// VAPI's id of the test call, when `call` was given.
    pub call_id: Option<String>,
    pub sandbox: bool,
}

#[derive(ApiResponse)]
pub enum BuyResponse {
    /// Bought, linked and recorded (or, for a retry, the number the first request bought).
    #[oai(status = 201)]
    Created(Json<PhoneNumberWritten>),
}

#[derive(ApiResponse)]
pub enum ReleaseResponse {
    /// Released. `X-Position` is the log position written.
    #[oai(status = 204)]
    Released(#[oai(header = "X-Position")] i64),
}

fn not_found() -> ApiError {
    ApiError::not_found("phone_number_not_found", "no such phone number")
}

fn view(id: &str, p: &PhoneNumberState) -> PhoneNumber {
    PhoneNumber {
        id: id.to_string(),
        number: p.number.clone(),
        friendly_name: p.friendly_name.clone(),
        assistant_id: p.assistant_id.clone(),
        twilio_sid: p.provider_sid.clone(),
        vapi_phone_number_id: p.vapi_phone_number_id.clone(),
    }
}

fn find(org: &Organization, id: &str) -> Result<PhoneNumber, ApiError> {
    org.live_phone_number(id)
        .map(|p| view(id, p))
        .ok_or_else(not_found)
}

fn area_code(value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    if v.len() == 3 && v.bytes().all(|b| b.is_ascii_digit()) && !v.starts_with(['0', '1']) {
        Ok(v.to_string())
    } else {
        Err(
            ApiError::unprocessable("invalid_input", "area_code must be a 3-digit US area code")
                .with_details(json!({ "field": "area_code" })),
        )
    }
}

pub(crate) fn e164(name: &str, value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    let digits = v.strip_prefix('+').unwrap_or("");
    if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(v.to_string())
    } else {
        Err(ApiError::unprocessable(
            "invalid_input",
            format!("{name} must be an E.164 number like +14155550123"),
        )
        .with_details(json!({ "field": name })))
    }
}

pub struct PhoneNumbersApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::PhoneNumbers")]
impl PhoneNumbersApi {
    /// Numbers Twilio offers in an area code (voice and SMS capable).
    #[oai(
        path = "/phone-numbers/search",
        method = "post",
        operation_id = "search_phone_numbers"
    )]
    async fn search_phone_numbers(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        body: Json<NumberSearch>,
    ) -> Result<Json<NumberSearchResult>, ApiError> {
        let (principal, _) = begin(&state, req, &auth).await?;
        super::require_manage(&principal)?;
        let code = area_code(&body.0.area_code)?;
        let limit = body.0.limit.unwrap_or(10);
        if !(1..=30).contains(&limit) {
            return Err(
                ApiError::unprocessable("invalid_input", "limit must be between 1 and 30")
                    .with_details(json!({ "field": "limit" })),
            );
        }
        let (numbers, sandbox) = twilio(&state)
            .search(&code, limit, &principal.org())
            .await
            .map_err(provider_error)?;
        Ok(Json(NumberSearchResult {
            data: numbers
                .into_iter()
                .map(|n| AvailablePhoneNumber {
                    phone_number: n.phone_number,
                    friendly_name: n.friendly_name,
                    locality: n.locality,
                    region: n.region,
                    postal_code: n.postal_code,
                    voice: n.voice,
                    sms: n.sms,
                })
                .collect(),
            sandbox,
        }))
    }

    /// List the organization's live phone numbers.
    #[oai(
        path = "/phone-numbers",
        method = "get",
        operation_id = "list_phone_numbers"
    )]
    async fn list_phone_numbers(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
    ) -> Result<Json<PhoneNumberList>, ApiError> {
        let (_, org) = begin(&state, req, &auth).await?;
        let data = org
            .phone_numbers
            .iter()
            .filter(|(_, p)| !p.released)
            .map(|(id, p)| view(id, p))
            .collect();
        Ok(Json(PhoneNumberList { data }))
    }

    /// Buy a number through Twilio and link it to an assistant in VAPI.
    ///
    /// Send `Idempotency-Key`: a retry with the same key never buys twice (409
    /// `purchase_in_progress` while the first runs, with `details.retry_after_seconds`; the
    /// first's number once it is done). A purchase left pending longer than
    /// `PROVISIONING_TIMEOUT_SECS` (its request crashed) is taken over by the retry, which
    /// looks the number up in Twilio first: found, it is linked and recorded (`recovered`);
    /// not found, the abandonment is recorded and the purchase starts again.
    /// 409 `assistant_not_synced`, 422 `no_numbers_available`; 502 `provider_rejected` /
    /// 503 `provider_unavailable` when Twilio or VAPI fail (the failure is recorded and a
    /// number already bought is released again).
    #[oai(
        path = "/phone-numbers",
        method = "post",
        operation_id = "buy_phone_number"
    )]
    async fn buy_phone_number(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        body: Json<NewPhoneNumber>,
    ) -> Result<BuyResponse, ApiError> {
        let (principal, _org) = begin(&state, req, &auth).await?;
        super::require_manage(&principal)?;
        let body = body.0;
        let number = body
            .phone_number
            .as_deref()
            .map(|n| e164("phone_number", n))
            .transpose()?;
        let code = body.area_code.as_deref().map(area_code).transpose()?;
        if number.is_none() && code.is_none() {
            return Err(ApiError::unprocessable(
                "invalid_input",
                "give phone_number (from a search) or area_code",
            )
            .with_details(json!({ "field": "area_code" })));
        }
        let friendly_name = body
            .friendly_name
            .as_deref()
            .map(|n| super::field("friendly_name", n, 64))
            .transpose()?;
        let id = match idempotency_key(req) {
            Some(key) => Uuid::new_v5(
                &principal.organization_id,
                format!("phone-number-purchase:{key}").as_bytes(),
            ),
            None => Uuid::new_v4(),
        }
        .to_string();
        let purchase = app::Purchase {
            id: id.clone(),
            number,
            area_code: code,
            assistant_id: body.assistant_id,
            friendly_name,
        };
        let bought = app::buy(&state, &principal.caller(), purchase).await?;
        Ok(BuyResponse::Created(Json(PhoneNumberWritten {
            data: view(&id, &bought.number),
            position: bought.position,
            sandbox: bought.sandbox,
            duplicate: bought.duplicate,
            recovered: bought.recovered,
        })))
    }

    /// One phone number.
    #[oai(
        path = "/phone-numbers/:id",
        method = "get",
        operation_id = "get_phone_number"
    )]
    async fn get_phone_number(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The phone number id.
        id: Path<String>,
    ) -> Result<Json<PhoneNumberResponse>, ApiError> {
        let (_, org) = begin(&state, req, &auth).await?;
        Ok(Json(PhoneNumberResponse {
            data: find(&org, &id.0)?,
        }))
    }

    /// Relink a number to another (synced) assistant in VAPI (`assistant_id: null`
    /// unlinks) and/or rename it in Twilio.
    #[oai(
        path = "/phone-numbers/:id",
        method = "patch",
        operation_id = "update_phone_number"
    )]
    async fn update_phone_number(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The phone number id.
        id: Path<String>,
        body: Json<PhoneNumberChanges>,
    ) -> Result<Json<PhoneNumberWritten>, ApiError> {
        let (principal, org) = begin(&state, req, &auth).await?;
        super::require_manage(&principal)?;
        let current = org.live_phone_number(&id.0).ok_or_else(not_found)?.clone();
        let body = body.0;
        let friendly_name = body
            .friendly_name
            .as_deref()
            .map(|n| super::field("friendly_name", n, 64))
            .transpose()?;
        let org_id = principal.org();
        let mut sandbox = false;
        let assistant_id = match body.assistant_id {
            MaybeUndefined::Undefined => current.assistant_id.clone(),
            MaybeUndefined::Null => None,
            MaybeUndefined::Value(a) => Some(a),
        };
        if assistant_id != current.assistant_id {
            let vapi_assistant = assistant_id
                .as_deref()
                .map(|a| app::synced_assistant(&org, a))
                .transpose()?;
            if let Some(vapi_number) = &current.vapi_phone_number_id {
                sandbox |= vapi(&state)
                    .update_phone_number(vapi_number, vapi_assistant.as_deref(), &org_id)
                    .await
                    .map_err(provider_error)?;
            }
        }
        if let Some(name) = &friendly_name {
            sandbox |= twilio(&state)
                .update(
                    &current.provider_sid,
                    vec![("FriendlyName".to_string(), name.clone())],
                    &org_id,
                )
                .await
                .map_err(provider_error)?;
        }
        let (position, org) = execute(
            &state,
            &principal,
            OrganizationCommand::ConfigurePhoneNumber {
                phone_number_id: id.0.clone(),
                assistant_id,
                friendly_name,
                actor: principal.actor(),
            },
            None,
        )
        .await?;
        Ok(Json(PhoneNumberWritten {
            data: find(&org, &id.0)?,
            position,
            sandbox,
            duplicate: false,
            recovered: false,
        }))
    }

    /// Release a number: removed from VAPI, released in Twilio, then recorded.
    #[oai(
        path = "/phone-numbers/:id",
        method = "delete",
        operation_id = "release_phone_number"
    )]
    async fn release_phone_number(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The phone number id.
        id: Path<String>,
    ) -> Result<ReleaseResponse, ApiError> {
        let (principal, org) = begin(&state, req, &auth).await?;
        super::require_manage(&principal)?;
        let current = org.live_phone_number(&id.0).ok_or_else(not_found)?.clone();
        let org_id = principal.org();
        if let Some(vapi_number) = &current.vapi_phone_number_id {
            vapi(&state)
                .delete_phone_number(vapi_number, &org_id)
                .await
                .map_err(provider_error)?;
        }
        twilio(&state)
            .release(&current.provider_sid, &org_id)
            .await
            .map_err(provider_error)?;
        let (position, _) = execute(
            &state,
            &principal,
            OrganizationCommand::ReleasePhoneNumber {
                phone_number_id: id.0.clone(),
                actor: principal.actor(),
            },
            None,
        )
        .await?;
        Ok(ReleaseResponse::Released(position))
    }

    /// Check that calls to the number reach a synced assistant; with `to`, also send a test
    /// SMS from the number through Twilio.
    #[oai(
        path = "/phone-numbers/:id/test",
        method = "post",
        operation_id = "test_phone_number"
    )]
    async fn test_phone_number(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        auth: OrganizationHeader,
        /// The phone number id.
        id: Path<String>,
        body: Json<PhoneNumberTestRequest>,
    ) -> Result<Json<PhoneNumberTest>, ApiError> {
        let (principal, org) = begin(&state, req, &auth).await?;
        super::require_manage(&principal)?;
        let current = org.live_phone_number(&id.0).ok_or_else(not_found)?.clone();
        let to = body.0.to.as_deref().map(|t| e164("to", t)).transpose()?;
        let ring = body
            .0
            .call
            .as_deref()
            .map(|t| e164("call", t))
            .transpose()?;
        let mut problems = Vec::new();
        match current.assistant_id.as_deref() {
            None => problems.push("no assistant is linked to the number".to_string()),
            Some(a) => match org.live_assistant(a) {
                None => problems.push(format!("the linked assistant {a} was deleted")),
                Some(s) if s.vapi_assistant_id.is_none() => {
                    problems.push(format!("the linked assistant {a} is not synced to VAPI"))
                }
                Some(s) if s.needs_sync => problems.push(format!(
                    "the linked assistant {a} changed since its last sync"
                )),
                Some(_) => {}
            },
        }
        if current.vapi_phone_number_id.is_none() {
            problems.push("the number is not imported into VAPI".to_string());
        }
        let twilio = twilio(&state);
        let mut sandbox = twilio.sandbox();
        let message_sid = match to {
            Some(to) => {
                let text = format!(
                    "CallFlex test: {} is live{}.",
                    current.number,
                    if problems.is_empty() {
                        ""
                    } else {
                        " (with problems)"
                    }
                );
                let sent = twilio
                    .send_sms(&to, &current.number, &text, &principal.org())
                    .await
                    .map_err(|e: ProviderError| provider_error(e))?;
                sandbox = sent.sandbox;
                Some(sent.sid)
            }
            None => None,
        };
        let call_id = match ring {
            Some(customer) => {
                let Some(assistant) = current.assistant_id.as_deref() else {
                    return Err(ApiError::conflict(
                        "not_ready",
                        "no test call can be placed: no assistant is linked to the number",
                    ));
                };
                let placed =
                    super::test_calls::ring(&state, &principal, &org, assistant, &id.0, &customer)
                        .await?;
                sandbox = if message_sid.is_some() {
                    sandbox || placed.sandbox
                } else {
                    placed.sandbox
                };
                Some(placed.call_id)
            }
            None => None,
        };
        Ok(Json(PhoneNumberTest {
            ready: problems.is_empty(),
            problems,
            message_sid,
            call_id,
            sandbox,
        }))
    }
}
