//! OpenAI-compatible chat completions: the request we send and what we accept back, including
//! the validated JSON of the seed's call-data extraction (`extractCallData`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The seed's summary prompt (`generateCallSummary`).
pub const SUMMARY_PROMPT: &str = "Summarize this phone call transcript in 2-3 sentences. Focus \
on: who called, what they needed, and what action was taken.";

/// The seed's extraction prompt (`extractCallData`), with urgency added.
pub const EXTRACTION_PROMPT: &str = "Extract structured data from this call transcript. Return \
JSON with:\n- callType: one of [inquiry, complaint, booking, support, sales, other]\n- \
sentiment: one of [positive, neutral, negative]\n- callerName: if mentioned\n- actionItems: \
array of follow-up actions needed\n- urgency: one of [low, normal, high]";

pub const CALL_TYPES: &[&str] = &[
    "inquiry",
    "complaint",
    "booking",
    "support",
    "sales",
    "other",
];
pub const SENTIMENTS: &[&str] = &["positive", "neutral", "negative"];
pub const URGENCIES: &[&str] = &["low", "normal", "high"];

/// A `POST /chat/completions` body. `json_mode` asks for a JSON object answer.
pub fn chat_request(model: &str, system: &str, user: &str, json_mode: bool) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ],
    });
    if json_mode {
        body["response_format"] = json!({"type": "json_object"});
    } else {
        body["max_tokens"] = json!(150);
    }
    body
}

/// The first choice's message text, if the answer has one.
pub fn completion_text(answer: &Value) -> Option<&str> {
    answer
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// What the extraction yields, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extraction {
    pub call_type: String,
    pub sentiment: String,
    pub caller_name: Option<String>,
    pub action_items: Vec<String>,
    pub urgency: String,
}

fn one_of(value: Option<&Value>, allowed: &[&str], field: &str) -> Result<String, String> {
    let text = value
        .and_then(Value::as_str)
        .map(|s| s.trim().to_ascii_lowercase())
        .ok_or_else(|| format!("{field} is missing or not a string"))?;
    allowed
        .iter()
        .find(|a| **a == text)
        .map(|a| a.to_string())
        .ok_or_else(|| format!("{field} {text:?} is not one of {allowed:?}"))
}

/// Parses and validates the extraction answer. Unknown fields are ignored; `urgency` defaults
/// to `normal` (older prompts did not ask for it); everything else the prompt names must be
/// present and one of its values.
pub fn parse_extraction(text: &str) -> Result<Extraction, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| "the answer is not a JSON object".to_string())?;
    let call_type = one_of(object.get("callType"), CALL_TYPES, "callType")?;
    let sentiment = one_of(object.get("sentiment"), SENTIMENTS, "sentiment")?;
    let urgency = match object.get("urgency") {
        None | Some(Value::Null) => "normal".to_string(),
        some => one_of(some, URGENCIES, "urgency")?,
    };
    let caller_name = match object.get("callerName") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.trim().to_string()).filter(|n| !n.is_empty()),
        Some(_) => return Err("callerName is not a string".into()),
    };
    let action_items = match object.get("actionItems") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(|s| s.trim().to_string())
                    .ok_or_else(|| "actionItems holds a non-string".to_string())
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect(),
        Some(_) => return Err("actionItems is not an array".into()),
    };
    Ok(Extraction {
        call_type,
        sentiment,
        caller_name,
        action_items,
        urgency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_extraction_is_normalized() {
        let got = parse_extraction(
            r#"{"callType":"Booking","sentiment":"positive","callerName":" Dana ","actionItems":["Call back at 3pm",""],"extra":1}"#,
        )
        .unwrap();
        assert_eq!(
            got,
            Extraction {
                call_type: "booking".into(),
                sentiment: "positive".into(),
                caller_name: Some("Dana".into()),
                action_items: vec!["Call back at 3pm".into()],
                urgency: "normal".into(),
            }
        );
    }

    #[test]
    fn malformed_or_off_list_answers_are_refused_with_the_reason() {
        for (text, reason) in [
            ("not json", "not JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"sentiment":"neutral"}"#, "callType"),
            (
                r#"{"callType":"party","sentiment":"neutral"}"#,
                "callType \"party\"",
            ),
            (r#"{"callType":"other","sentiment":"meh"}"#, "sentiment"),
            (
                r#"{"callType":"other","sentiment":"neutral","actionItems":"x"}"#,
                "actionItems",
            ),
            (
                r#"{"callType":"other","sentiment":"neutral","callerName":7}"#,
                "callerName",
            ),
            (
                r#"{"callType":"other","sentiment":"neutral","urgency":"extreme"}"#,
                "urgency",
            ),
        ] {
            let err = parse_extraction(text).unwrap_err();
            assert!(err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn the_request_asks_for_json_only_for_the_extraction() {
        let summary = chat_request("m", SUMMARY_PROMPT, "hello", false);
        assert!(summary.get("response_format").is_none());
        let extraction = chat_request("m", EXTRACTION_PROMPT, "hello", true);
        assert_eq!(extraction["response_format"]["type"], "json_object");
        assert_eq!(extraction["messages"][1]["content"], "hello");
        let answer = json!({"choices":[{"message":{"content":"  A summary. "}}]});
        assert_eq!(completion_text(&answer), Some("A summary."));
        assert_eq!(completion_text(&json!({"choices":[]})), None);
    }
}
