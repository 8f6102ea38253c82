//! `POST /api/webhooks/{vapi/{organization_id}, twilio/status, stripe}`.

use std::sync::Arc;

use poem::web::Data;
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use crate::http::error::ApiError;
use crate::http::payload::{RawForm, RawJson};
use crate::http::ApiTags;
use crate::state::AppState;
use crate::webhooks::{self, vapi::AuthHeaders, Outcome};

#[derive(ApiResponse)]
pub enum WebhookResponse {
    /// Accepted: every event the delivery produced is durably committed. For tool calls,
    /// function calls and assistant requests the body is VAPI's expected answer; otherwise
    /// `{"received": true, "position": <last log position written>}`.
    #[oai(status = 200)]
    Ok(Json<serde_json::Value>),
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn respond(outcome: Outcome) -> WebhookResponse {
    WebhookResponse::Ok(Json(outcome.body))
}

pub struct WebhookApi;

#[OpenApi(prefix_path = "/api/webhooks", tag = "ApiTags::Webhooks")]
impl WebhookApi {
    /// VAPI server messages for one organization.
    ///
    /// Accepts VAPI's `{"message": {...}}` envelope (status-update, end-of-call-report,
    /// tool-calls, function-call, transcript, hang, speech-update, conversation-update,
    /// assistant-request, transfer-destination-request, and unknown types) and the older flat
    /// shape (call-start, call-end, ...). The tool calls of one delivery are committed in one
    /// append before the answer. Authenticated by `X-Vapi-Secret`, by HMAC (`x-signature` over
    /// `{x-timestamp}.{body}`) or by `x-vapi-signature` (HMAC-SHA256 of the body).
    #[oai(
        path = "/vapi/:organization_id",
        method = "post",
        operation_id = "vapi_webhook"
    )]
    async fn vapi(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        /// The organization the assistant belongs to.
        organization_id: Path<String>,
        body: RawJson,
    ) -> Result<WebhookResponse, ApiError> {
        let raw = body.0;
        raw.require("application/json")?;
        let bytes = raw.bytes()?;
        let headers = AuthHeaders {
            vapi_secret: header(req, "x-vapi-secret"),
            signature: header(req, "x-signature"),
            timestamp: header(req, "x-timestamp"),
            vapi_signature: header(req, "x-vapi-signature"),
        };
        let outcome = counted(
            "vapi",
            webhooks::vapi::ingest(
                &state,
                &organization_id.0,
                &headers,
                raw.content_type.as_deref(),
                bytes,
            )
            .await,
        )?;
        Ok(respond(outcome))
    }

    /// Twilio call status callbacks (form-encoded), verified with `X-Twilio-Signature`.
    #[oai(
        path = "/twilio/status",
        method = "post",
        operation_id = "twilio_status_webhook"
    )]
    async fn twilio_status(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: RawForm,
    ) -> Result<WebhookResponse, ApiError> {
        let raw = body.0;
        raw.require("application/x-www-form-urlencoded")?;
        let bytes = raw.bytes()?;
        let outcome = counted(
            "twilio",
            webhooks::twilio::ingest(
                &state,
                header(req, "x-twilio-signature").as_deref(),
                req.uri().query(),
                raw.content_type.as_deref(),
                bytes,
            )
            .await,
        )?;
        Ok(respond(outcome))
    }

    /// Events from a customer's own systems (Zapier, a CRM): `contact.upsert`,
    /// `contact.note`, `callback.request` (`{"type", "data"}`). Signed by the Standard
    /// Webhooks scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature`) with the
    /// signing secret of the organization's connected `webhook` or `zapier` integration,
    /// named by `X-CallFlex-Organization`. 401 on a bad signature, 422 on an unknown type; a
    /// repeated `webhook-id` gets the first answer.
    #[oai(
        path = "/integrations/:provider",
        method = "post",
        operation_id = "integration_webhook"
    )]
    async fn integration(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        /// `webhook` or `zapier`.
        provider: Path<String>,
        body: RawJson,
    ) -> Result<WebhookResponse, ApiError> {
        let raw = body.0;
        raw.require("application/json")?;
        let bytes = raw.bytes()?;
        let (organization, id, timestamp, signature) = (
            header(req, "x-callflex-organization"),
            header(req, "webhook-id"),
            header(req, "webhook-timestamp"),
            header(req, "webhook-signature"),
        );
        let headers = webhooks::integrations::Headers {
            organization: organization.as_deref(),
            id: id.as_deref(),
            timestamp: timestamp.as_deref(),
            signature: signature.as_deref(),
        };
        let outcome = counted(
            "integrations",
            webhooks::integrations::ingest(
                &state,
                &provider.0,
                &headers,
                raw.content_type.as_deref(),
                bytes,
            )
            .await,
        )?;
        Ok(respond(outcome))
    }

    /// Stripe events, verified with `Stripe-Signature` (tolerance 300 s).
    #[oai(path = "/stripe", method = "post", operation_id = "stripe_webhook")]
    async fn stripe(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: RawJson,
    ) -> Result<WebhookResponse, ApiError> {
        let raw = body.0;
        raw.require("application/json")?;
        let bytes = raw.bytes()?;
        let outcome = counted(
            "stripe",
            webhooks::stripe::ingest(
                &state,
                header(req, "stripe-signature").as_deref(),
                raw.content_type.as_deref(),
                bytes,
            )
            .await,
        )?;
        Ok(respond(outcome))
    }
}

/// Counts a delivery by provider and outcome for `/metrics`, passing its result on.
fn counted(
    provider: &'static str,
    result: Result<webhooks::Outcome, crate::app::AppError>,
) -> Result<webhooks::Outcome, ApiError> {
    match result {
        Ok(outcome) => {
            crate::telemetry::record_delivery(provider, outcome.status, outcome.event_count == 0);
            Ok(outcome)
        }
        Err(err) => {
            let err = ApiError::from(err);
            crate::telemetry::record_delivery(provider, err.status(), false);
            Err(err)
        }
    }
}
