//! The transport floor of the ingest loop: the cheapest HTTP service the same load generator
//! can talk to. Each request is read whole and answered after ONE autocommit INSERT of the raw
//! baseline's row (same table, statement and payload), so the floor's rate against the raw
//! INSERT rate is what the loopback HTTP exchange and the generator cost on their own, and
//! the service's rate against the floor's is what its own work costs (parsing, the call's
//! decision, the ledger row with the raw body, several events, the read models).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, post, Body, EndpointExt, Route};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Executor;

use crate::append::{bind_raw, sample_payload, RAW_INSERT, RAW_TABLE};

struct Floor {
    pool: PgPool,
    payload: String,
    meta: String,
    stream: String,
    sequence: AtomicI64,
}

/// The answer satisfies the generator's tool-call check (it looks for `"results"`).
const ANSWER: &str = r#"{"results":[]}"#;

#[handler]
async fn deliver(body: Body, Data(floor): Data<&Arc<Floor>>) -> poem::Result<&'static str> {
    body.into_bytes().await?;
    let sequence = floor.sequence.fetch_add(1, Ordering::Relaxed);
    let insert = bind_raw(
        sqlx::query(RAW_INSERT),
        floor.stream.clone(),
        sequence,
        &floor.payload,
        &floor.meta,
    );
    insert.execute(&floor.pool).await.map_err(|err| {
        poem::Error::from_string(err.to_string(), StatusCode::SERVICE_UNAVAILABLE)
    })?;
    Ok(ANSWER)
}

/// Serves the floor on 127.0.0.1, writing to the raw baseline's database at `url` through a
/// pool of `connections` (the loop's concurrency); answers its address.
pub async fn serve(url: &str, connections: u32) -> anyhow::Result<SocketAddr> {
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .min_connections(connections)
        .test_before_acquire(false)
        .connect(url)
        .await?;
    pool.execute(RAW_TABLE).await?;
    let floor = Arc::new(Floor {
        pool,
        payload: sample_payload(0).to_string(),
        meta: serde_json::json!({"extra": {"delivery": "floor"}}).to_string(),
        stream: format!("floor-{}", uuid::Uuid::new_v4().simple()),
        sequence: AtomicI64::new(1),
    });
    let app = Route::new().at("/floor", post(deliver)).data(floor);
    let base = crate::local::serve(app).await?;
    let addr = base.trim_start_matches("http://").parse()?;
    Ok(addr)
}
