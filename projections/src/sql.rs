//! Small helpers shared by projectors' SQL.

use chrono::{DateTime, Utc};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

pub fn ms(at: &DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub fn opt_ms(at: &Option<DateTime<Utc>>) -> Option<i64> {
    at.as_ref().map(ms)
}

pub fn flag(value: bool) -> i64 {
    i64::from(value)
}

/// JSON text for a value column, `None` for JSON null (so "absent" stays absent).
pub fn json_text(value: &serde_json::Value) -> Option<String> {
    (!value.is_null()).then(|| value.to_string())
}

/// Binds an optional float. sqlx 0.8's Any driver declares a NULL `f64` parameter as `float4`
/// on PostgreSQL (and a NULL `f32` as `float8`), and statements are cached by their text: one
/// first prepared with a NULL would then reject every real value ("incorrect binary data
/// format"). A NULL `f32` declares `float8`, the type of every float column here.
pub fn bind_f64<'q>(
    query: Query<'q, Any, AnyArguments<'q>>,
    value: Option<f64>,
) -> Query<'q, Any, AnyArguments<'q>> {
    match value {
        Some(value) => query.bind(value),
        None => query.bind(None::<f32>),
    }
}
