//! What an auditor is shown of an event's data: secrets never (sealed secrets, hashes,
//! tokens become `***`), and personal data (phone numbers, email addresses, names, spoken
//! words) only to roles that may see it: owners and admins see it, the `auditor` role sees
//! it masked.

use serde_json::{json, Map, Value};

/// Who is looking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Owners and admins: everything but secrets.
    Full,
    /// The auditor role: secrets and personal data masked.
    PersonalDataMasked,
}

impl View {
    /// `data` as this viewer may see it.
    pub fn show(self, data: &Value) -> Value {
        match self {
            View::Full => mask(data),
            View::PersonalDataMasked => mask_personal(&mask(data)),
        }
    }
}

/// Field names whose values are never shown (sealed secrets, hashes, tokens).
fn secret_field(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "secret",
        "hash",
        "token",
        "password",
        "credential",
        "auth_token",
    ]
    .iter()
    .any(|s| name.contains(s))
}

/// `value` with every secret field's value replaced by `"***"`.
pub fn mask(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let shown = if secret_field(k) && !v.is_null() {
                        json!("***")
                    } else {
                        mask(v)
                    };
                    (k.clone(), shown)
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask).collect()),
        other => other.clone(),
    }
}

/// Field names that hold personal data: how to reach or name a person, or what they said.
fn personal_field(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let exact = [
        "name",
        "caller_name",
        "first_name",
        "last_name",
        "text",
        "full_text",
        "message",
        "notes",
        "note",
        "summary",
        "transcript",
        "address",
        "recording_url",
        "body",
        "content",
        "reason",
        "customer",
        "caller",
        "to",
        "from",
        "owner_email",
    ];
    exact.contains(&name.as_str())
        || name.ends_with("_number")
        || name.ends_with("_email")
        || name.ends_with("_phone")
        || name.contains("phone_number") && !name.ends_with("_id")
        || name == "email"
        || name == "phone"
        || name == "number"
}

/// A string that shows its shape, not its content: an email keeps its domain, a phone number
/// its last two digits, anything else its length.
fn masked_string(value: &str) -> String {
    if let Some((_, domain)) = value.split_once('@') {
        return format!("•••@{domain}");
    }
    let digits: Vec<char> = value.chars().filter(char::is_ascii_digit).collect();
    if digits.len() >= 7 && digits.len() * 2 >= value.chars().count() {
        let tail: String = digits[digits.len() - 2..].iter().collect();
        return format!("•••{tail}");
    }
    format!("[{} characters]", value.chars().count())
}

/// `value` with every personal field's content masked (at any depth).
pub fn mask_personal(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let shown = if personal_field(k) {
                        hide(v)
                    } else {
                        mask_personal(v)
                    };
                    (k.clone(), shown)
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_personal).collect()),
        other => other.clone(),
    }
}

/// Every string under `value` masked; numbers, booleans and nulls kept (they carry no one's
/// words), the structure kept.
fn hide(value: &Value) -> Value {
    match value {
        Value::String(s) => json!(masked_string(s)),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), hide(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(hide).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_at_any_depth_and_nothing_else() {
        let event = json!({"WebhookEndpointCreated": {"url": "https://crm.test", "secret": "sealed:abc",
            "nested": [{"key_hash": "9f", "name": "CRM"}], "token_hash": null}});
        assert_eq!(
            mask(&event),
            json!({"WebhookEndpointCreated": {"url": "https://crm.test", "secret": "***",
                "nested": [{"key_hash": "***", "name": "CRM"}], "token_hash": null}})
        );
    }

    #[test]
    fn personal_data_is_masked_for_auditors_only() {
        let event = json!({"CallStarted": {"from_number": "+15551234567", "phone_number_id": "pn_1",
            "segments": [{"speaker": "user", "text": "my truck broke down", "at": 12}],
            "owner_email": "ana@fleet.test", "secret": "sealed:x", "status": "ringing"}});
        let audited = View::PersonalDataMasked.show(&event);
        assert_eq!(
            audited,
            json!({"CallStarted": {"from_number": "•••67", "phone_number_id": "pn_1",
                "segments": [{"speaker": "user", "text": "[19 characters]", "at": 12}],
                "owner_email": "•••@fleet.test", "secret": "***", "status": "ringing"}})
        );
        let full = View::Full.show(&event);
        assert_eq!(full["CallStarted"]["from_number"], "+15551234567");
        assert_eq!(full["CallStarted"]["secret"], "***");
    }
}
