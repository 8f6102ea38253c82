//! Lenient accessors over `serde_json::Value`.
//!
//! Providers drift: numbers arrive as strings, ids as numbers, timestamps as ISO strings or epoch
//! seconds/milliseconds. Every accessor here returns `None` instead of failing so the parsers can
//! chain fallbacks (`a.or_else(|| b)`) and never panic on hostile input.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Epoch values above this are taken as milliseconds (10^12 ms is 2001-09-09; 10^12 s is year
/// 33658, so no real seconds value is that large).
pub(crate) const MS_THRESHOLD: i64 = 1_000_000_000_000;

/// Walks `path` through nested objects.
pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.as_object()?.get(*key)?;
    }
    Some(cur)
}

/// A string, or a number rendered as a string (ids sometimes arrive as numbers). Empty strings
/// count as absent so that fallbacks apply.
pub(crate) fn string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Like [`string`] but also stringifies booleans (e.g. VAPI `successEvaluation`).
pub(crate) fn stringify_scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Bool(b) => Some(b.to_string()),
        other => string(Some(other)),
    }
}

/// A finite float from a number or a numeric string.
pub(crate) fn f64_of(v: Option<&Value>) -> Option<f64> {
    let f = match v? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    f.is_finite().then_some(f)
}

/// An integer from an integral number, an integral float, or a numeric string; `None` when out
/// of `i64` range.
pub(crate) fn i64_of(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(float_to_i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(float_to_i64))
        }
        _ => None,
    }
}

fn float_to_i64(f: f64) -> Option<i64> {
    // 9.2e18 is just under i64::MAX; anything beyond is rejected rather than saturated.
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64)
}

/// A boolean from `true`/`false`, `"true"`/`"false"`, or `0`/`1`.
pub(crate) fn bool_of(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        _ => None,
    }
}

/// A Stripe-style reference: either an id string or an expanded object carrying `id`.
pub(crate) fn id_ref(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Object(o) => string(o.get("id")),
        other => string(Some(other)),
    }
}

/// Epoch seconds or milliseconds (auto-detected) to a UTC instant.
pub(crate) fn epoch_to_utc(n: i64) -> Option<DateTime<Utc>> {
    if n.checked_abs()? > MS_THRESHOLD {
        DateTime::from_timestamp_millis(n)
    } else {
        DateTime::from_timestamp(n, 0)
    }
}

/// A timestamp given as an RFC 3339 string, an epoch number (s or ms), or a numeric string.
pub(crate) fn time_of(v: Option<&Value>) -> Option<DateTime<Utc>> {
    match v? {
        Value::String(s) => {
            let s = s.trim();
            DateTime::parse_from_rfc3339(s)
                .map(|d| d.with_timezone(&Utc))
                .ok()
                .or_else(|| naive_utc(s))
                .or_else(|| i64_of(Some(&Value::String(s.to_owned()))).and_then(epoch_to_utc))
        }
        Value::Number(_) => i64_of(v)
            .or_else(|| f64_of(v).and_then(trunc))
            .and_then(epoch_to_utc),
        _ => None,
    }
}

/// An ISO date-time without an offset (`2024-07-15T05:45:29.814`, or with a space), taken as
/// UTC: some senders and logging layers drop the `Z`.
fn naive_utc(s: &str) -> Option<DateTime<Utc>> {
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
        .map(|n| n.and_utc())
}

fn trunc(f: f64) -> Option<i64> {
    float_to_i64(f.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn iso_times_without_an_offset_are_taken_as_utc() {
        let expected = time_of(Some(&json!("2024-07-15T05:45:29.814Z")));
        assert!(expected.is_some());
        assert_eq!(time_of(Some(&json!("2024-07-15T05:45:29.814"))), expected);
        assert_eq!(time_of(Some(&json!("2024-07-15 05:45:29.814"))), expected);
        assert_eq!(time_of(Some(&json!("2024-07-15 25:45:29"))), None);
    }

    #[test]
    fn numbers_as_strings_are_accepted() {
        assert_eq!(f64_of(Some(&json!("1.5"))), Some(1.5));
        assert_eq!(i64_of(Some(&json!(" 42 "))), Some(42));
        assert_eq!(i64_of(Some(&json!(42.0))), Some(42));
    }

    #[test]
    fn non_finite_and_out_of_range_numbers_are_absent() {
        assert_eq!(f64_of(Some(&json!("NaN"))), None);
        assert_eq!(f64_of(Some(&json!("inf"))), None);
        assert_eq!(i64_of(Some(&json!(1e300))), None);
        assert_eq!(i64_of(Some(&json!(u64::MAX))), None);
        assert_eq!(i64_of(Some(&json!(1.5))), None);
        assert_eq!(time_of(Some(&json!(i64::MAX))), None);
        assert_eq!(time_of(Some(&json!(i64::MIN))), None);
        assert_eq!(time_of(Some(&json!(-1e300))), None);
    }

    #[test]
    fn epochs_in_seconds_and_milliseconds_give_the_same_instant() {
        let s = time_of(Some(&json!(1727030665))).unwrap();
        let ms = time_of(Some(&json!(1727030665000_i64))).unwrap();
        let iso = time_of(Some(&json!("2024-09-22T18:44:25Z"))).unwrap();
        let numeric_string = time_of(Some(&json!("1727030665000"))).unwrap();
        assert_eq!(s, ms);
        assert_eq!(s, iso);
        assert_eq!(s, numeric_string);
    }

    #[test]
    fn ids_may_be_strings_numbers_or_expanded_objects() {
        assert_eq!(id_ref(Some(&json!("cus_1"))), Some("cus_1".into()));
        assert_eq!(id_ref(Some(&json!({"id": "cus_1"}))), Some("cus_1".into()));
        assert_eq!(id_ref(Some(&json!(7))), Some("7".into()));
        assert_eq!(id_ref(Some(&json!([1]))), None);
        assert_eq!(string(Some(&json!(""))), None);
    }
}
