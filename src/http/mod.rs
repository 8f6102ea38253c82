//! The HTTP edge: the only module that knows about poem, poem-openapi and wire JSON shapes.

pub mod accounts;
pub mod allow;
pub mod as_of;
pub mod body_limit;
pub mod control_chars;
pub mod document;
pub mod error;
pub mod health;
pub mod operator;
pub mod pages;
pub mod payload;
pub mod provisioning;
pub mod query;
pub mod recording_files;
pub mod trace;
pub mod webhooks;

use std::sync::Arc;

use poem::middleware::Tracing;
use poem::{Endpoint, EndpointExt, IntoResponse, Response, Route};
use poem_openapi::{OpenApiService, Tags};

use crate::state::AppState;

#[derive(Tags)]
pub enum ApiTags {
    /// Deliveries from VAPI, Twilio and Stripe.
    Webhooks,
    /// Service health and projection lag.
    Operations,
    /// Calls, transcripts, statistics and transcript search.
    Calls,
    /// Contacts: created from callers' numbers, editable.
    Contacts,
    /// Plan, usage and invoices.
    Billing,
    /// Built-in assistant templates.
    Templates,
    /// AI assistants and their sync to VAPI.
    Assistants,
    /// Phone numbers bought through Twilio and linked in VAPI.
    PhoneNumbers,
    /// Outbound integrations (webhooks, Zapier, OAuth providers).
    Integrations,
    /// Sign-up, sign-in, sessions and password resets.
    Auth,
    /// Organizations, members and roles, API keys.
    Organizations,
}

pub type Api = (
    webhooks::WebhookApi,
    health::HealthApi,
    query::QueryApi,
    provisioning::ProvisioningApi,
    accounts::AccountsApi,
);

pub fn api_service() -> OpenApiService<Api, ()> {
    OpenApiService::new(
        (
            webhooks::WebhookApi,
            health::HealthApi,
            query::api(),
            provisioning::api(),
            accounts::api(),
        ),
        "CallFlex API",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Event-sourced backend of the CallFlex AI phone receptionist. Webhook deliveries and \
         commands become events in an append-only log; read models are projected from it.",
    )
}

/// The OpenAPI document as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    document::finish(&api_service().spec())
}

pub fn app(state: Arc<AppState>) -> impl Endpoint {
    let service = api_service();
    let finished = Arc::new(openapi_json());
    let spec_json = poem::endpoint::make_sync(move |_| {
        Response::builder()
            .content_type("application/json")
            .body(finished.as_str().to_string())
    });
    let spec_yaml = service.spec_endpoint_yaml();
    let docs = service.swagger_ui();
    let limit = state.config.max_body_bytes;
    let foreground = state.foreground.clone();
    let allowed = Arc::new(allow::AllowedMethods::from_spec(&openapi_json()));
    let api_limits = body_limit::ApiBodyLimits {
        api: state.config.api_max_body_bytes,
        auth: state.config.auth_max_body_bytes,
    };
    Route::new()
        .nest("/", service)
        .at("/openapi.json", spec_json)
        .at("/openapi.yaml", spec_yaml)
        .nest("/docs", docs)
        .at("/verify-email", poem::get(pages::verify_email))
        .at("/reset-password", poem::get(pages::reset_password))
        .at("/recordings/:id", poem::get(recording_files::recording))
        .data(state)
        .data(payload::BodyLimit(limit))
        .with(Tracing)
        .catch_all_error(|err| async move {
            // Our own typed errors already carry the JSON body: pass them through.
            if err.is_from_response() {
                return err.into_response();
            }
            let (status, body) = error::from_poem(&err);
            Response::builder()
                .status(poem::http::StatusCode::from_u16(status).unwrap_or_default())
                .content_type("application/json")
                .body(body.to_string())
                .into_response()
        })
        .around({
            let declared = allowed.clone();
            move |next, req| body_limit::limit_body(next, req, api_limits, declared.clone())
        })
        .around(move |next, req| {
            let allowed = allowed.clone();
            async move {
                let path = req.uri().path().to_string();
                let mut response = next.get_response(req).await;
                if response.status() == poem::http::StatusCode::METHOD_NOT_ALLOWED
                    && !response.headers().contains_key("allow")
                {
                    if let Some(value) = allowed
                        .for_path(&path)
                        .and_then(|v| poem::http::HeaderValue::from_str(&v).ok())
                    {
                        response.headers_mut().insert("allow", value);
                    }
                }
                Ok(response)
            }
        })
        .around(move |next, req| server_timing(next, req, foreground.clone()))
        .around(trace::correlate)
}

/// `Retry-After` on a 503 that does not set its own.
const RETRY_AFTER_SECONDS: &str = "1";

/// Adds `Server-Timing: app;dur=<ms>, log;dur=<ms>` to every answer: the time spent inside
/// the service (reading the body, handling, committing), without the network, and the part of
/// it spent in the log's appends (round trip and durable commit). Latency budgets such as
/// VAPI's tool-call path are judged on `app`.
async fn server_timing<E: Endpoint>(
    next: Arc<E>,
    req: poem::Request,
    foreground: Arc<crate::foreground::Foreground>,
) -> poem::Result<Response> {
    let started = std::time::Instant::now();
    // Counted until the answer's head is ready (a streamed body, such as the live feed's,
    // is not a request waiting).
    let in_flight = foreground.enter();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // Boxed: the endpoint futures nest deep; a debug build would otherwise carry them all on
    // one worker thread's stack.
    let (mut response, log) = eventlog::timing::measured(Box::pin(next.get_response(req))).await;
    drop(in_flight);
    crate::telemetry::record_request(
        method.as_str(),
        &path,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let log_ms = log.as_secs_f64() * 1e3;
    if let Ok(value) =
        poem::http::HeaderValue::from_str(&format!("app;dur={ms:.3}, log;dur={log_ms:.3}"))
    {
        response.headers_mut().insert("server-timing", value);
    }
    // Every 503 is transient (write contention, a read model catching up, a provider or the
    // database unavailable): tell clients and providers when to come back.
    if response.status() == poem::http::StatusCode::SERVICE_UNAVAILABLE
        && !response.headers().contains_key("retry-after")
    {
        response.headers_mut().insert(
            "retry-after",
            poem::http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
    }
    Ok(response)
}

/// The `Idempotency-Key` header, trimmed, if any (scoped into a command key by
/// [`crate::app::command_meta`]).
pub fn idempotency_key(req: &poem::Request) -> Option<String> {
    req.headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
}
