//! The operator port (`CALLFLEX_OPERATOR_ADDR`, loopback at PORT + 1 by default): what an
//! operator or a Prometheus scraper reads, kept off the public API's port. `GET /health` in
//! detail (positions, lag, errors per projector and process) and `GET /metrics`.

use std::sync::Arc;

use poem::web::Data;
use poem::{handler, Endpoint, EndpointExt, IntoResponse, Response, Route};

use super::health;
use crate::state::AppState;

pub fn app(state: Arc<AppState>) -> impl Endpoint {
    Route::new()
        .at("/health", poem::get(detailed_health))
        .at("/metrics", poem::get(metrics))
        .data(state)
}

fn unavailable(err: impl std::fmt::Display) -> Response {
    Response::builder()
        .status(poem::http::StatusCode::SERVICE_UNAVAILABLE)
        .content_type("application/json")
        .body(
            serde_json::json!({"error": {"code": "store_unavailable", "message": err.to_string()}})
                .to_string(),
        )
}

#[handler]
async fn detailed_health(state: Data<&Arc<AppState>>) -> Response {
    match health::detail(&state).await {
        Ok(detail) => poem_openapi::payload::Json(detail).into_response(),
        Err(err) => unavailable(format!("{err:?}")),
    }
}

#[handler]
async fn metrics(state: Data<&Arc<AppState>>) -> Response {
    match crate::telemetry::render(&state).await {
        Ok(text) => Response::builder()
            .content_type("text/plain; version=0.0.4")
            .body(text),
        Err(err) => unavailable(err),
    }
}
