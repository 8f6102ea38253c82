//! JSON text as both backends can store it.
//!
//! PostgreSQL's `jsonb` (and its `text`) cannot hold U+0000: a payload carrying one, which a
//! provider can send as `\u0000` in any string, would make the append fail and the delivery
//! be retried forever. Such characters are stored as U+FFFD (the replacement character) on
//! both backends, so the log reads the same everywhere.

use std::borrow::Cow;

use serde::Serialize;

/// Serializes `value`, writing every U+0000 in its strings as U+FFFD.
pub fn to_text<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let text = serde_json::to_string(value)?;
    Ok(match without_nul_escapes(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(clean) => clean,
    })
}

/// Replaces each `\u0000` escape of serialized JSON (not an escaped backslash followed by
/// `u0000`) with `\ufffd`.
pub fn without_nul_escapes(json: &str) -> Cow<'_, str> {
    if !json.contains("\\u0000") {
        return Cow::Borrowed(json);
    }
    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len());
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        if json[i..].starts_with("\\u0000") {
            out.push_str(&json[start..i]);
            out.push_str("\\ufffd");
            i += 6;
            start = i;
        } else {
            // Any other escape: skip the escaped character (it may be a backslash).
            i += 2;
        }
    }
    out.push_str(&json[start..]);
    Cow::Owned(out)
}

/// Replaces U+0000 in plain text (for text columns) with U+FFFD.
pub fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_in_strings_becomes_the_replacement_character() {
        let value = serde_json::json!({"text": "a\u{0}b", "k\u{0}": ["\u{0}"]});
        let text = to_text(&value).unwrap();
        assert!(!text.contains("\\u0000"));
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["text"], "a\u{fffd}b");
        assert_eq!(back["k\u{fffd}"][0], "\u{fffd}");
    }

    #[test]
    fn an_escaped_backslash_before_u0000_is_left_alone() {
        let value = serde_json::json!({"text": "C:\\u0000 and \\\u{0}"});
        let text = to_text(&value).unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["text"], "C:\\u0000 and \\\u{fffd}");
    }

    #[test]
    fn text_without_nul_is_not_copied() {
        assert!(matches!(
            without_nul_escapes("{\"a\":\"\\n\"}"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(without_nul("plain"), Cow::Borrowed(_)));
        assert_eq!(without_nul("a\0b"), "a\u{fffd}b");
    }
}
