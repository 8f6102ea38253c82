//! Control characters at the edge. PostgreSQL text cannot hold U+0000, and no identifier
//! (an email, a phone number, an id, a token, a URL) legitimately carries a control
//! character: such input is refused here, naming the parameter, before it reaches a query.
//! Free text keeps the log's rule instead: U+0000 becomes U+FFFD.

use serde_json::Value;

use crate::http::error::ApiError;

/// A control character other than the whitespace free text may carry.
fn is_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\n' | '\r' | '\t')
}

/// Whether a JSON member of this name holds an identifier rather than free text.
pub fn is_identifier(name: &str) -> bool {
    let key = name.to_ascii_lowercase();
    key == "id"
        || key.ends_with("_id")
        || name.ends_with("Id")
        || [
            "email", "phone", "number", "token", "url", "code", "state", "slug", "role", "scope",
        ]
        .iter()
        .any(|part| key.contains(part))
}

/// Refuses a query parameter with a control character in it (400 naming it). A path with
/// one names nothing that can exist: 404.
pub fn check_uri(uri: &poem::http::Uri) -> Result<(), ApiError> {
    let path = percent_decode(uri.path());
    if path.chars().any(|c| c.is_control()) {
        return Err(ApiError::not_found(
            "not_found",
            "no resource has a control character in its path",
        )
        .with_details(serde_json::json!({ "parameter": "path" })));
    }
    if let Some(query) = uri.query() {
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if name.chars().chain(value.chars()).any(|c| c.is_control()) {
                return Err(ApiError::bad_parameter(
                    &name,
                    format!("{name} must not contain control characters"),
                ));
            }
        }
    }
    Ok(())
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Checks a JSON body: a control character in an identifier member is a 422 naming its path;
/// U+0000 in free text becomes U+FFFD. Returns the body to pass on (rewritten only when
/// something was replaced). A body that is not JSON is passed on for the handler to refuse.
pub fn check_json(body: &[u8]) -> Result<Option<Vec<u8>>, ApiError> {
    // Cheap test first: a JSON text can only carry a control character escaped.
    let has_escape = body.windows(4).any(|w| w == b"\\u00");
    if !has_escape {
        return Ok(None);
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return Ok(None);
    };
    let mut replaced = false;
    walk(&mut value, "", false, &mut replaced)?;
    Ok(replaced.then(|| value.to_string().into_bytes()))
}

fn walk(
    value: &mut Value,
    path: &str,
    identifier: bool,
    replaced: &mut bool,
) -> Result<(), ApiError> {
    match value {
        Value::String(text) => {
            if identifier && text.chars().any(is_control) {
                return Err(ApiError::unprocessable(
                    "invalid_input",
                    format!("{path} must not contain control characters"),
                )
                .with_details(serde_json::json!({ "parameter": path })));
            }
            if text.contains('\0') {
                *text = text.replace('\0', "\u{FFFD}");
                *replaced = true;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &format!("{path}[{i}]"), identifier, replaced)?;
            }
        }
        Value::Object(members) => {
            for (key, member) in members.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                // A member name with a control character names no field: it is ignored
                // like any unknown member (its value is still cleaned below).
                walk(member, &child, is_identifier(key), replaced)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_in_an_identifier_is_refused_naming_it() {
        let err = check_json(br#"{"email":"a\u0000@b.test","password":"x"}"#).unwrap_err();
        let detail = err.detail();
        assert_eq!(detail.code, "invalid_input");
        assert_eq!(detail.details.as_ref().unwrap()["parameter"], "email");
        let err = check_json(br#"{"contact":{"phone_number":"+1555\u0001"}}"#).unwrap_err();
        assert_eq!(
            err.detail().details.as_ref().unwrap()["parameter"],
            "contact.phone_number"
        );
    }

    #[test]
    fn a_nul_in_free_text_becomes_a_replacement_character() {
        let body = check_json(br#"{"notes":"a\u0000b","name":"ok"}"#)
            .unwrap()
            .expect("rewritten");
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["notes"], "a\u{FFFD}b");
        assert!(check_json(br#"{"notes":"plain"}"#).unwrap().is_none());
        assert!(check_json(br#"{"notes":"line\nbreak \u00e9"}"#)
            .unwrap()
            .is_none());
    }

    #[test]
    fn control_characters_in_the_query_or_path_are_refused() {
        let uri: poem::http::Uri = "/api/v1/contacts?q=a%00b".parse().unwrap();
        let err = check_uri(&uri).unwrap_err();
        assert_eq!(err.detail().details.as_ref().unwrap()["parameter"], "q");
        let uri: poem::http::Uri = "/api/v1/calls/a%00b".parse().unwrap();
        assert!(matches!(check_uri(&uri), Err(ApiError::NotFound(_))));
        let uri: poem::http::Uri = "/api/v1/contacts?q=caf%C3%A9+ok".parse().unwrap();
        assert!(check_uri(&uri).is_ok());
    }
}
