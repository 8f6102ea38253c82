//! Small helpers shared by projectors' SQL.

use chrono::{DateTime, Utc};

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
