//! Lone UTF-16 surrogate escapes in JSON text.
//!
//! JavaScript strings are UTF-16, and `JSON.stringify` writes an unpaired surrogate (an emoji
//! cut in half by a streaming transcript or a truncated LLM message) as an escape such as
//! `"\ud83d"`. That is legal JSON text but not a Unicode string, so serde_json refuses the whole
//! body. Refusing would lose the delivery (a 4xx is not retried), so such escapes are rewritten
//! to `\ufffd` (the replacement character) and the body is parsed again.

use std::borrow::Cow;

/// Parses a provider's JSON body; a body refused only for lone surrogate escapes is repaired
/// and parsed again (a cut emoji from a JavaScript sender: the message is kept, minus that
/// character).
/// A leading UTF-8 byte order mark (which some senders and proxies add) is skipped too.
pub fn parse_json(body: &[u8]) -> Result<serde_json::Value, crate::WireError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let invalid = |e: serde_json::Error| crate::WireError::InvalidJson(e.to_string());
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        Err(err) => match repair_lone_surrogates(body) {
            Cow::Owned(repaired) => serde_json::from_slice(&repaired).map_err(invalid),
            Cow::Borrowed(_) => Err(invalid(err)),
        },
    }
}

/// `json` with every unpaired surrogate escape replaced by `\ufffd`; borrowed when there is
/// none. Escaped backslashes (`\\ud83d` is the text `\ud83d`) are left alone.
pub fn repair_lone_surrogates(json: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0; // json[..copied] is already in `out`
    let mut i = 0;
    while i < json.len() {
        if json[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = escape_at(json, i) else {
            i += 2; // `\"`, `\\`, `\n`, ...: skip the escaped character
            continue;
        };
        let lone = match unit {
            0xD800..=0xDBFF => match escape_at(json, i + 6) {
                Some(0xDC00..=0xDFFF) => {
                    i += 12; // a proper pair
                    continue;
                }
                _ => true,
            },
            0xDC00..=0xDFFF => true,
            _ => false,
        };
        if lone {
            let out = out.get_or_insert_with(|| Vec::with_capacity(json.len()));
            out.extend_from_slice(&json[copied..i]);
            out.extend_from_slice(b"\\ufffd");
            copied = i + 6;
        }
        i += 6;
    }
    match out {
        None => Cow::Borrowed(json),
        Some(mut out) => {
            out.extend_from_slice(&json[copied..]);
            Cow::Owned(out)
        }
    }
}

/// The code unit of a `\uXXXX` escape starting at `at`, if there is one.
fn escape_at(json: &[u8], at: usize) -> Option<u16> {
    let escape = json.get(at..at + 6)?;
    if escape[0] != b'\\' || escape[1] != b'u' {
        return None;
    }
    let hex = std::str::from_utf8(&escape[2..]).ok()?;
    u16::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_byte_order_mark_before_the_json_is_skipped() {
        let parsed = super::parse_json(b"\xEF\xBB\xBF{\"a\":1}").unwrap();
        assert_eq!(parsed, serde_json::json!({"a": 1}));
        assert!(super::parse_json(b"\xEF\xBB").is_err());
    }

    use super::*;

    fn repaired(json: &str) -> String {
        String::from_utf8(repair_lone_surrogates(json.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn unpaired_surrogates_become_replacement_characters() {
        assert_eq!(repaired(r#"{"t":"hi \ud83d"}"#), r#"{"t":"hi \ufffd"}"#);
        assert_eq!(repaired(r#"{"t":"\ude00x"}"#), r#"{"t":"\ufffdx"}"#);
        assert_eq!(
            repaired(r#"{"t":"\uD83D\u0041"}"#),
            r#"{"t":"\ufffd\u0041"}"#
        );
        let value: serde_json::Value =
            serde_json::from_str(&repaired(r#"{"t":"cut \ud83d"}"#)).unwrap();
        assert_eq!(value["t"], "cut \u{fffd}");
    }

    #[test]
    fn pairs_escaped_backslashes_and_plain_text_are_untouched() {
        for json in [
            r#"{"t":"\ud83d\ude00 ok"}"#,
            r#"{"t":"\\ud83d is text"}"#,
            r#"{"t":"\"\\\n\u00e9"}"#,
            "{\"t\":\"plain 😀\"}",
            r#"{"t":"ends with \u"}"#,
        ] {
            assert!(
                matches!(repair_lone_surrogates(json.as_bytes()), Cow::Borrowed(_)),
                "{json}"
            );
        }
    }
}
