//! VAPI server messages: one normalized [`VapiMessage`] for every shape VAPI has sent.
//!
//! Why: VAPI's payloads drifted over time (see `shared/research/providers.md`). Real deliveries
//! are an envelope `{"message": {...}}`; the original design used a flat shape (`type` at the
//! top, everything under `call`, `call-start`/`call-end`). Handlers downstream should see one
//! model and never re-implement the fallbacks, so every drift is absorbed here:
//!
//! * `transcript[transcriptType="final"]` as a type spelling;
//! * tool-call arguments as an object, a JSON string, flat `{id, name, parameters}`, or nested in
//!   `toolWithToolCallList[].toolCall`;
//! * legacy top-level `transcript/summary/messages/recordingUrl/stereoRecordingUrl` beside
//!   `artifact`/`analysis` (the latter win when non-empty);
//! * `durationSeconds` / `durationMs` / `durationMinutes` / seed `call.duration` / none;
//! * `timestamp` as ISO string, epoch ms or epoch s; numbers as strings;
//! * the `call` snapshot may be stale: event status comes from the message, never from `call`.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::error::WireError;
use crate::lenient::{at, f64_of, string, stringify_scalar, time_of};

/// A normalized VAPI server message.
#[derive(Debug, Clone, PartialEq)]
pub struct VapiMessage {
    /// What happened, with the per-type payload.
    pub kind: VapiKind,
    /// The `type` string exactly as sent (useful for logging unknown types).
    pub raw_type: String,
    /// Call identity and routing facts (snapshot; may be stale).
    pub call: CallInfo,
    /// When VAPI emitted the message, if it said so.
    pub timestamp: Option<DateTime<Utc>>,
}

/// Call facts common to every message. `status` is the possibly stale `call.status` snapshot;
/// use [`VapiKind::StatusUpdate`] for authoritative status transitions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    pub id: Option<String>,
    pub org_id: Option<String>,
    /// `"inbound" | "outbound" | "web"` from `call.type` (or the seed's `call.direction`).
    pub direction: Option<String>,
    pub customer_number: Option<String>,
    /// Our (the business's) number: `message.phoneNumber.number` or `call.phoneNumber.number`.
    pub our_number: Option<String>,
    pub phone_number_id: Option<String>,
    pub assistant_id: Option<String>,
    /// `call.phoneCallProviderId`: the Twilio CallSid for phone calls.
    pub provider_call_id: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub status: Option<String>,
}

/// The per-type payload of a VAPI message.
///
/// `EndOfCallReport` is much larger than the other variants; that is fine for one value per
/// webhook and keeps pattern matching free of boxes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum VapiKind {
    StatusUpdate {
        /// From the message (empty if the message carried none); never from the stale `call`.
        status: String,
        ended_reason: Option<String>,
    },
    /// `end-of-call-report`, and the seed's `call-end`.
    EndOfCallReport(EndOfCall),
    /// The seed's `call-start`.
    CallStart,
    /// `tool-calls`: reply with [`tool_calls_reply`].
    ToolCalls(Vec<ToolCall>),
    /// Legacy `function-call` (`id` is always `None`): reply with [`function_call_reply`].
    FunctionCall(ToolCall),
    Transcript {
        role: String,
        /// `"partial"` or `"final"` (lower-cased; `"final"` when unspecified).
        transcript_type: String,
        text: String,
    },
    Hang,
    SpeechUpdate {
        status: String,
        role: String,
    },
    ConversationUpdate {
        messages: Value,
    },
    /// Must be answered within 7.5 s: [`assistant_request_reply_assistant_id`].
    AssistantRequest,
    /// The model asked for a transfer without a destination: answer with
    /// [`transfer_destination_reply`] (or [`assistant_request_error`] to refuse).
    TransferDestinationRequest,
    /// Any other type; still `Ok` so the endpoint can acknowledge it.
    Unknown,
}

/// One function/tool invocation requested by the assistant.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// `toolCallId` to echo in the reply; `None` for legacy function calls.
    pub id: Option<String>,
    /// Empty if VAPI sent no name (reply with an error result).
    pub name: String,
    /// Parsed arguments; empty when absent or unparseable.
    pub arguments: Map<String, Value>,
}

/// End-of-call report. `duration_seconds` is `None` when VAPI did not send one: compute it from
/// `started_at`/`ended_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct EndOfCall {
    pub ended_reason: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    /// Total cost in USD.
    pub cost: Option<f64>,
    /// The `costs[]` breakdown (`Null` when absent).
    pub costs: Value,
    pub transcript: Option<String>,
    /// Transcript segments (`Null` when absent).
    pub messages: Value,
    pub recording_url: Option<String>,
    pub stereo_recording_url: Option<String>,
    pub summary: Option<String>,
    /// `analysis.structuredData` object (`Null` when absent).
    pub structured_data: Value,
    /// `analysis.successEvaluation` stringified (it may be bool, number or string).
    pub success_evaluation: Option<String>,
}

/// Parses a VAPI webhook body (envelope or flat shape).
pub fn parse_vapi(body: &[u8]) -> Result<VapiMessage, WireError> {
    let root = crate::surrogates::parse_json(body)?;
    let top = root
        .as_object()
        .ok_or_else(|| WireError::InvalidShape("body is not a JSON object".into()))?;
    let has_type = |v: &Value| v.get("type").and_then(Value::as_str).is_some();
    let msg = match top.get("message") {
        Some(m) if m.is_object() && has_type(m) => m,
        _ if has_type(&root) => &root,
        _ => return Err(WireError::InvalidShape("missing message type".into())),
    };
    let raw_type = msg
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let call = msg.get("call").unwrap_or(&Value::Null);
    let kind = parse_kind(raw_type.trim(), msg, call)?;
    Ok(VapiMessage {
        kind,
        call: call_info(msg, call),
        timestamp: time_of(msg.get("timestamp")),
        raw_type,
    })
}

fn parse_kind(t: &str, msg: &Value, call: &Value) -> Result<VapiKind, WireError> {
    let s = |key: &str| string(msg.get(key));
    Ok(match t {
        "status-update" => VapiKind::StatusUpdate {
            status: s("status").unwrap_or_default(),
            ended_reason: s("endedReason").or_else(|| string(call.get("endedReason"))),
        },
        "end-of-call-report" | "call-end" => VapiKind::EndOfCallReport(end_of_call(msg, call)),
        "call-start" => VapiKind::CallStart,
        "tool-calls" => VapiKind::ToolCalls(tool_calls(msg)),
        "function-call" => {
            let fc = msg
                .get("functionCall")
                .filter(|v| v.is_object())
                .ok_or_else(|| {
                    WireError::InvalidShape("function-call without functionCall".into())
                })?;
            VapiKind::FunctionCall(ToolCall {
                id: None,
                name: string(fc.get("name")).unwrap_or_default(),
                arguments: arguments(fc.get("parameters").or_else(|| fc.get("arguments"))),
            })
        }
        "hang" => VapiKind::Hang,
        "speech-update" => VapiKind::SpeechUpdate {
            status: s("status").unwrap_or_default(),
            role: s("role").unwrap_or_default(),
        },
        "conversation-update" => VapiKind::ConversationUpdate {
            messages: msg
                .get("messages")
                .or_else(|| at(msg, &["artifact", "messages"]))
                .cloned()
                .unwrap_or(Value::Null),
        },
        "assistant-request" => VapiKind::AssistantRequest,
        "transfer-destination-request" => VapiKind::TransferDestinationRequest,
        t if t == "transcript" || t.starts_with("transcript[") => VapiKind::Transcript {
            role: s("role").unwrap_or_default(),
            transcript_type: s("transcriptType")
                .or_else(|| bracket_transcript_type(t))
                .unwrap_or_else(|| "final".into())
                .to_ascii_lowercase(),
            text: msg
                .get("transcript")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
        _ => VapiKind::Unknown,
    })
}

/// `transcript[transcriptType="final"]` → `final`.
fn bracket_transcript_type(t: &str) -> Option<String> {
    let inner = t.strip_prefix("transcript[")?.strip_suffix(']')?;
    let (key, value) = inner.split_once('=')?;
    (key.trim() == "transcriptType")
        .then(|| value.trim().trim_matches(['"', '\'']).to_owned())
        .filter(|v| !v.is_empty())
}

fn call_info(msg: &Value, call: &Value) -> CallInfo {
    let c = |path: &[&str]| string(at(call, path));
    let m = |path: &[&str]| string(at(msg, path));
    let direction = match c(&["type"]).as_deref() {
        Some("inboundPhoneCall") => Some("inbound".to_owned()),
        Some("outboundPhoneCall") => Some("outbound".to_owned()),
        Some("webCall") => Some("web".to_owned()),
        _ => c(&["direction"])
            .map(|d| d.to_ascii_lowercase())
            .filter(|d| matches!(d.as_str(), "inbound" | "outbound" | "web")),
    };
    CallInfo {
        id: c(&["id"]),
        org_id: c(&["orgId"]),
        direction,
        customer_number: c(&["customer", "number"]).or_else(|| m(&["customer", "number"])),
        our_number: m(&["phoneNumber", "number"]).or_else(|| c(&["phoneNumber", "number"])),
        phone_number_id: c(&["phoneNumberId"])
            .or_else(|| m(&["phoneNumber", "id"]))
            .or_else(|| c(&["phoneNumber", "id"])),
        assistant_id: c(&["assistantId"])
            .or_else(|| c(&["assistant", "id"]))
            .or_else(|| m(&["assistant", "id"])),
        provider_call_id: c(&["phoneCallProviderId"]),
        started_at: time_of(call.get("startedAt")).or_else(|| time_of(msg.get("startedAt"))),
        status: c(&["status"]),
    }
}

/// First non-empty string among candidates.
fn first_string(candidates: &[Option<&Value>]) -> Option<String> {
    candidates.iter().find_map(|v| string(*v))
}

/// First candidate that is present and not an empty array/object/null.
fn first_non_empty(candidates: &[Option<&Value>]) -> Value {
    candidates
        .iter()
        .flatten()
        .find(|v| match v {
            Value::Null => false,
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            Value::String(s) => !s.is_empty(),
            _ => true,
        })
        .map(|v| (*v).clone())
        .unwrap_or(Value::Null)
}

/// The longest call we believe: VAPI caps a call at 12 hours (`maxDurationSeconds`); a week
/// leaves room for any future limit while refusing the absurd (1e308 would overflow every
/// usage total it was added to, stalling the usage read model).
const MAX_CALL_SECONDS: f64 = 7.0 * 24.0 * 3600.0;
/// The largest cost of one call we believe, in USD.
const MAX_CALL_COST: f64 = 100_000.0;

fn plausible_seconds(f: f64) -> Option<f64> {
    (0.0..=MAX_CALL_SECONDS).contains(&f).then_some(f)
}

fn plausible_cost(f: f64) -> Option<f64> {
    (0.0..=MAX_CALL_COST).contains(&f).then_some(f)
}

fn duration_seconds(v: &Value) -> Option<f64> {
    f64_of(v.get("durationSeconds"))
        .or_else(|| f64_of(v.get("durationMs")).map(|ms| ms / 1000.0))
        .or_else(|| f64_of(v.get("durationMinutes")).map(|m| m * 60.0))
        .or_else(|| f64_of(v.get("duration")))
        .and_then(plausible_seconds)
}

fn end_of_call(msg: &Value, call: &Value) -> EndOfCall {
    let artifact = msg.get("artifact").unwrap_or(&Value::Null);
    let analysis = msg
        .get("analysis")
        .filter(|a| a.is_object())
        .or_else(|| call.get("analysis"))
        .unwrap_or(&Value::Null);
    let structured_data = match analysis.get("structuredData") {
        Some(Value::Object(o)) => Value::Object(o.clone()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => Value::Object(o),
            _ => Value::Null,
        },
        _ => Value::Null,
    };
    let messages = first_non_empty(&[
        artifact.get("messages"),
        msg.get("messages"),
        call.get("messages"),
    ]);
    let (first_said, last_said) = message_span(&messages);
    EndOfCall {
        ended_reason: first_string(&[msg.get("endedReason"), call.get("endedReason")]),
        started_at: time_of(msg.get("startedAt"))
            .or_else(|| time_of(call.get("startedAt")))
            .or(first_said),
        ended_at: time_of(msg.get("endedAt"))
            .or_else(|| time_of(call.get("endedAt")))
            .or(last_said),
        duration_seconds: duration_seconds(msg).or_else(|| duration_seconds(call)),
        cost: f64_of(msg.get("cost"))
            .or_else(|| f64_of(call.get("cost")))
            .and_then(plausible_cost),
        costs: first_non_empty(&[msg.get("costs"), call.get("costs")]),
        transcript: first_string(&[
            artifact.get("transcript"),
            msg.get("transcript"),
            call.get("transcript"),
        ]),
        messages,
        recording_url: first_string(&[
            artifact.get("recordingUrl"),
            at(artifact, &["recording", "mono", "combinedUrl"]),
            msg.get("recordingUrl"),
            call.get("recordingUrl"),
        ]),
        stereo_recording_url: first_string(&[
            artifact.get("stereoRecordingUrl"),
            at(artifact, &["recording", "stereoUrl"]),
            msg.get("stereoRecordingUrl"),
            call.get("stereoRecordingUrl"),
        ]),
        summary: first_string(&[
            analysis.get("summary"),
            msg.get("summary"),
            call.get("summary"),
        ]),
        structured_data,
        success_evaluation: stringify_scalar(analysis.get("successEvaluation")),
    }
}

/// The first and last instants in a report's messages (`time`, and `endTime` where a turn
/// has one). Reports from 2024 carry neither `startedAt`/`endedAt` nor a duration; the
/// conversation's span (from the system message at `secondsFromStart` 0 to the end of the
/// last turn) stands in for them, never longer than the call.
fn message_span(messages: &Value) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let instants = messages
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| [time_of(m.get("time")), time_of(m.get("endTime"))])
        .flatten();
    instants.fold((None, None), |(first, last), t| {
        (
            Some(first.map_or(t, |f: DateTime<Utc>| f.min(t))),
            Some(last.map_or(t, |l: DateTime<Utc>| l.max(t))),
        )
    })
}

/// Tool-call arguments: object as is; a JSON string is parsed (non-object or invalid → empty).
fn arguments(v: Option<&Value>) -> Map<String, Value> {
    match v {
        Some(Value::Object(o)) => o.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => o,
            _ => Map::new(),
        },
        _ => Map::new(),
    }
}

fn tool_call(item: &Value) -> Option<ToolCall> {
    item.as_object()?;
    let f = item.get("function").filter(|f| f.is_object());
    let name = f
        .and_then(|f| string(f.get("name")))
        .or_else(|| string(item.get("name")))
        .unwrap_or_default();
    let args = f
        .and_then(|f| f.get("arguments").or_else(|| f.get("parameters")))
        .or_else(|| item.get("arguments"))
        .or_else(|| item.get("parameters"));
    Some(ToolCall {
        id: string(item.get("id")),
        name,
        arguments: arguments(args),
    })
}

fn tool_calls(msg: &Value) -> Vec<ToolCall> {
    let list = |key: &str| {
        msg.get(key)
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
    };
    if let Some(items) = list("toolCallList").or_else(|| list("toolCalls")) {
        return items.iter().filter_map(tool_call).collect();
    }
    list("toolWithToolCallList")
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get("toolCall"))
                .filter_map(tool_call)
                .collect()
        })
        .unwrap_or_default()
}

/// Dedupe key for exact redeliveries: hex SHA-256 of the raw body. (`_msg` is accepted so the
/// key derivation can later depend on the message without changing callers.)
pub fn delivery_key(_msg: &VapiMessage, body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Short (16 hex chars) stable hash of a transcript line for dedupe within one call. Fields are
/// length-prefixed so `("ab","c")` and `("a","bc")` differ; the timestamp is in epoch ms.
pub fn transcript_key(role: &str, text: &str, timestamp: Option<DateTime<Utc>>) -> String {
    let mut h = Sha256::new();
    for field in [role.as_bytes(), text.as_bytes()] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field);
    }
    match timestamp {
        Some(t) => h.update(t.timestamp_millis().to_be_bytes()),
        None => h.update(b"none"),
    }
    let digest = h.finalize();
    hex::encode(digest.iter().take(8).copied().collect::<Vec<u8>>())
}

/// Reply to `tool-calls`: `{"results":[{"toolCallId","name","result"}]}` (`toolCallId` omitted
/// when unknown).
pub fn tool_calls_reply(results: &[(Option<String>, String, String)]) -> Value {
    let items: Vec<Value> = results
        .iter()
        .map(|(id, name, result)| {
            let mut o = Map::new();
            if let Some(id) = id {
                o.insert("toolCallId".into(), Value::String(id.clone()));
            }
            o.insert("name".into(), Value::String(name.clone()));
            o.insert("result".into(), Value::String(result.clone()));
            Value::Object(o)
        })
        .collect();
    json!({ "results": items })
}

/// Reply to a legacy `function-call`: `{"result": "..."}`.
pub fn function_call_reply(result: &str) -> Value {
    json!({ "result": result })
}

/// Reply to `assistant-request` selecting a saved assistant: `{"assistantId": "..."}`.
pub fn assistant_request_reply_assistant_id(id: &str) -> Value {
    json!({ "assistantId": id })
}

/// Reply to `transfer-destination-request`: transfer to a phone number, saying `message` first.
pub fn transfer_destination_reply(number: &str, message: &str) -> Value {
    json!({ "destination": { "type": "number", "number": number, "message": message } })
}

/// Reply to `assistant-request` (or `transfer-destination-request`) refusing; VAPI speaks
/// `message` to the caller.
pub fn assistant_request_error(message: &str) -> Value {
    json!({ "error": message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../fixtures/vapi/", $name))
        };
    }

    fn parse_value(v: Value) -> VapiMessage {
        parse_vapi(v.to_string().as_bytes()).unwrap()
    }

    fn eoc(msg: &VapiMessage) -> &EndOfCall {
        match &msg.kind {
            VapiKind::EndOfCallReport(e) => e,
            other => panic!("expected end-of-call report, got {other:?}"),
        }
    }

    #[test]
    fn the_2024_end_of_call_capture_falls_back_to_legacy_top_level_fields() {
        let m = parse_vapi(fixture!(
            "end-of-call-report.2024-07.inbound-twilio.vapi4k.json"
        ))
        .unwrap();
        assert_eq!(m.raw_type, "end-of-call-report");
        let e = eoc(&m);
        assert_eq!(e.ended_reason.as_deref(), Some("customer-ended-call"));
        assert!(e
            .transcript
            .as_deref()
            .unwrap()
            .starts_with("AI: Welcome to EO Care."));
        assert_eq!(e.messages.as_array().unwrap().len(), 10);
        assert!(e.recording_url.as_deref().unwrap().ends_with("-mono.wav"));
        assert!(e
            .stereo_recording_url
            .as_deref()
            .unwrap()
            .ends_with("-stereo.wav"));
        assert!(e
            .summary
            .as_deref()
            .unwrap()
            .starts_with("Julie from EO Care"));
        assert_eq!(e.success_evaluation.as_deref(), Some("false"));
        assert_eq!(e.structured_data, Value::Null);
        assert_eq!(e.cost, None);
        assert_eq!(e.costs, Value::Null);
        assert_eq!(e.duration_seconds, None);
        // No startedAt/endedAt in 2024: the conversation's span stands in (the system
        // message at secondsFromStart 0 to the end of the last turn).
        assert_eq!(e.started_at.unwrap().timestamp_millis(), 1721022288293);
        assert_eq!(e.ended_at.unwrap().timestamp_millis(), 1721022324181);
        assert_eq!(
            m.timestamp.unwrap().to_rfc3339(),
            "2024-07-15T05:45:29.814+00:00"
        );
        let c = &m.call;
        assert_eq!(
            c.id.as_deref(),
            Some("ef71627d-9673-40f8-8491-31aa3fe7a540")
        );
        assert_eq!(
            c.org_id.as_deref(),
            Some("679a13ec-f40d-4055-8959-797c4ee1694b")
        );
        assert_eq!(c.direction.as_deref(), Some("inbound"));
        assert_eq!(c.customer_number.as_deref(), Some("+19256836490"));
        assert_eq!(c.our_number.as_deref(), Some("+19254207621"));
        assert_eq!(
            c.phone_number_id.as_deref(),
            Some("5a5a04dc-dcbe-45b1-8f64-fd32a253d135")
        );
        assert_eq!(
            c.provider_call_id.as_deref(),
            Some("CAcff7566ef44add9365401449bd5e4198")
        );
        // The snapshot is stale: the report arrives after the call ended.
        assert_eq!(c.status.as_deref(), Some("ringing"));
    }

    #[test]
    fn a_modern_end_of_call_report_prefers_artifact_and_analysis() {
        let m = parse_value(json!({"message": {
            "type": "end-of-call-report",
            "timestamp": 1749546431600_i64,
            "endedReason": "assistant-ended-call",
            "startedAt": "2025-06-10T09:00:00.000Z",
            "endedAt": "2025-06-10T09:02:30.500Z",
            "durationMs": "150500",
            "cost": "0.1234",
            "costs": [{"type": "model", "cost": 0.1}],
            "transcript": "legacy transcript",
            "summary": "legacy summary",
            "recordingUrl": "https://legacy/mono.wav",
            "artifact": {
                "transcript": "AI: Hi\nUser: Hello",
                "messages": [{"role": "bot", "message": "Hi"}],
                "recording": {"stereoUrl": "https://new/stereo.wav", "mono": {"combinedUrl": "https://new/mono.wav"}}
            },
            "analysis": {"summary": "new summary", "structuredData": {"intent": "booking"}, "successEvaluation": true},
            "call": {"id": "c1", "status": "ringing", "endedReason": "stale", "type": "outboundPhoneCall"}
        }}));
        let e = eoc(&m);
        assert_eq!(e.ended_reason.as_deref(), Some("assistant-ended-call"));
        assert_eq!(e.duration_seconds, Some(150.5));
        assert_eq!(e.cost, Some(0.1234));
        assert_eq!(e.costs, json!([{"type": "model", "cost": 0.1}]));
        assert_eq!(e.transcript.as_deref(), Some("AI: Hi\nUser: Hello"));
        assert_eq!(e.messages, json!([{"role": "bot", "message": "Hi"}]));
        assert_eq!(e.recording_url.as_deref(), Some("https://new/mono.wav"));
        assert_eq!(
            e.stereo_recording_url.as_deref(),
            Some("https://new/stereo.wav")
        );
        assert_eq!(e.summary.as_deref(), Some("new summary"));
        assert_eq!(e.structured_data, json!({"intent": "booking"}));
        assert_eq!(e.success_evaluation.as_deref(), Some("true"));
        let (s, end) = (e.started_at.unwrap(), e.ended_at.unwrap());
        assert_eq!((end - s).num_milliseconds(), 150_500);
        assert_eq!(m.call.direction.as_deref(), Some("outbound"));
        assert_eq!(m.timestamp.unwrap().timestamp_millis(), 1749546431600);
    }

    #[test]
    fn duration_seconds_wins_over_duration_ms_and_numbers_may_be_strings() {
        let m = parse_value(json!({"message": {"type": "end-of-call-report",
            "durationSeconds": "12.5", "durationMs": 99999, "analysis": {"successEvaluation": 8}}}));
        assert_eq!(eoc(&m).duration_seconds, Some(12.5));
        assert_eq!(eoc(&m).success_evaluation.as_deref(), Some("8"));
        let m =
            parse_value(json!({"message": {"type": "end-of-call-report", "durationMinutes": 2}}));
        assert_eq!(eoc(&m).duration_seconds, Some(120.0));
        let m =
            parse_value(json!({"message": {"type": "end-of-call-report", "durationSeconds": -4}}));
        assert_eq!(eoc(&m).duration_seconds, None);
    }

    #[test]
    fn ended_reason_and_times_fall_back_to_the_call_object() {
        let m = parse_value(json!({"message": {"type": "end-of-call-report",
            "call": {"endedReason": "silence-timed-out", "startedAt": "2025-01-01T00:00:00Z", "endedAt": "2025-01-01T00:01:00Z"}}}));
        let e = eoc(&m);
        assert_eq!(e.ended_reason.as_deref(), Some("silence-timed-out"));
        assert_eq!(
            (e.ended_at.unwrap() - e.started_at.unwrap()).num_seconds(),
            60
        );
        assert_eq!(m.call.started_at, e.started_at);
    }

    #[test]
    fn structured_data_given_as_a_json_string_is_parsed() {
        let m = parse_value(json!({"message": {"type": "end-of-call-report",
            "analysis": {"structuredData": "{\"a\":1}"}}}));
        assert_eq!(eoc(&m).structured_data, json!({"a": 1}));
        let m = parse_value(json!({"message": {"type": "end-of-call-report",
            "analysis": {"structuredData": [1, 2]}}}));
        assert_eq!(eoc(&m).structured_data, Value::Null);
    }

    #[test]
    fn the_seed_flat_call_end_reads_everything_from_call() {
        let m = parse_value(json!({
            "type": "call-end",
            "call": {
                "id": "vapi-call-1", "direction": "Inbound",
                "customer": {"number": "+15550001111"},
                "phoneNumber": {"id": "pn_1", "number": "+15552223333"},
                "assistant": {"id": "asst_1"},
                "duration": 95, "endedReason": "customer-ended-call", "cost": 0.42,
                "transcript": "User: hi", "messages": [{"role": "user"}],
                "recordingUrl": "https://rec/1.wav", "summary": "Caller said hi",
                "analysis": {"structuredData": {"callback": true}, "successEvaluation": "pass"}
            }
        }));
        assert_eq!(m.raw_type, "call-end");
        let e = eoc(&m);
        assert_eq!(e.duration_seconds, Some(95.0));
        assert_eq!(e.cost, Some(0.42));
        assert_eq!(e.ended_reason.as_deref(), Some("customer-ended-call"));
        assert_eq!(e.transcript.as_deref(), Some("User: hi"));
        assert_eq!(e.messages, json!([{"role": "user"}]));
        assert_eq!(e.recording_url.as_deref(), Some("https://rec/1.wav"));
        assert_eq!(e.summary.as_deref(), Some("Caller said hi"));
        assert_eq!(e.structured_data, json!({"callback": true}));
        assert_eq!(e.success_evaluation.as_deref(), Some("pass"));
        assert_eq!(m.call.id.as_deref(), Some("vapi-call-1"));
        assert_eq!(m.call.direction.as_deref(), Some("inbound"));
        assert_eq!(m.call.customer_number.as_deref(), Some("+15550001111"));
        assert_eq!(m.call.our_number.as_deref(), Some("+15552223333"));
        assert_eq!(m.call.phone_number_id.as_deref(), Some("pn_1"));
        assert_eq!(m.call.assistant_id.as_deref(), Some("asst_1"));
    }

    #[test]
    fn the_seed_flat_call_start_is_recognized() {
        let m = parse_value(
            json!({"type": "call-start", "call": {"id": "c9", "customer": {"number": "+1"}}}),
        );
        assert_eq!(m.kind, VapiKind::CallStart);
        assert_eq!(m.call.id.as_deref(), Some("c9"));
        assert_eq!(m.timestamp, None);
    }

    #[test]
    fn a_status_update_takes_status_from_the_message_not_the_stale_call() {
        let m = parse_vapi(fixture!("status-update.in-progress.2024-09.vapi4k.json")).unwrap();
        assert_eq!(
            m.kind,
            VapiKind::StatusUpdate {
                status: "in-progress".into(),
                ended_reason: None
            }
        );
        assert_eq!(m.call.status.as_deref(), Some("queued"));
        assert_eq!(m.call.direction.as_deref(), Some("web"));
        assert_eq!(m.timestamp.unwrap().timestamp_millis(), 1727030665008);
        let ended = parse_value(
            json!({"message": {"type": "status-update", "status": "ended",
            "endedReason": "customer-did-not-answer", "call": {"status": "ringing"}}}),
        );
        assert_eq!(
            ended.kind,
            VapiKind::StatusUpdate {
                status: "ended".into(),
                ended_reason: Some("customer-did-not-answer".into())
            }
        );
    }

    #[test]
    fn the_tool_calls_capture_yields_one_call_with_object_arguments() {
        let m = parse_vapi(fixture!("tool-calls.2024-09.vapi4k.json")).unwrap();
        let VapiKind::ToolCalls(calls) = &m.kind else {
            panic!("{:?}", m.kind)
        };
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls[0].id.as_deref(),
            Some("call_7c7qwGDOMvAaSyHojhux3oEh")
        );
        assert_eq!(calls[0].name, "weatherByAreaCode_001");
        assert_eq!(calls[0].arguments.get("areaCode"), Some(&json!("415")));
        assert_eq!(
            m.timestamp.unwrap().to_rfc3339(),
            "2024-09-01T21:57:34.332+00:00"
        );
    }

    #[test]
    fn tool_call_arguments_may_be_a_json_string_a_flat_shape_or_garbage() {
        let m = parse_value(json!({"message": {"type": "tool-calls", "toolCallList": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}},
            {"id": "b", "name": "g", "parameters": {"y": 2}},
            {"id": "c", "function": {"name": "h", "arguments": "{not json"}},
            {"id": "d", "function": {"name": "i", "arguments": "[1,2]"}},
            {"id": 5, "function": {"name": "j", "arguments": 7}},
            "not an object",
            {"function": {}}
        ]}}));
        let VapiKind::ToolCalls(calls) = m.kind else {
            panic!()
        };
        assert_eq!(calls.len(), 6);
        assert_eq!(calls[0].arguments.get("x"), Some(&json!(1)));
        assert_eq!(
            (calls[1].name.as_str(), calls[1].arguments.get("y")),
            ("g", Some(&json!(2)))
        );
        assert!(calls[2].arguments.is_empty());
        assert!(calls[3].arguments.is_empty());
        assert_eq!(calls[4].id.as_deref(), Some("5"));
        assert!(calls[4].arguments.is_empty());
        assert_eq!(calls[5].name, "");
        assert_eq!(calls[5].id, None);
    }

    #[test]
    fn tool_calls_only_in_tool_with_tool_call_list_are_found() {
        let m = parse_value(json!({"message": {"type": "tool-calls", "toolCallList": [],
            "toolWithToolCallList": [{"type": "function", "function": {"name": "f"},
                "toolCall": {"id": "t1", "function": {"name": "f", "arguments": {"k": "v"}}}}]}}));
        let VapiKind::ToolCalls(calls) = m.kind else {
            panic!()
        };
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].id.as_deref(), Some("t1"));
        assert_eq!(calls[0].arguments.get("k"), Some(&json!("v")));
    }

    #[test]
    fn legacy_function_calls_parse_object_and_string_parameters() {
        let m = parse_vapi(fixture!("function-call.legacy.2024-09.vapi4k.json")).unwrap();
        let VapiKind::FunctionCall(fc) = &m.kind else {
            panic!()
        };
        assert_eq!(
            (fc.id.as_deref(), fc.name.as_str()),
            (None, "weatherByAreaCode_001")
        );
        assert_eq!(fc.arguments.get("areaCode"), Some(&json!("415")));
        assert_eq!(m.call.direction.as_deref(), Some("web"));

        let m = parse_vapi(fixture!(
            "function-call.legacy.docs-2024-10.reconstructed.json"
        ))
        .unwrap();
        let VapiKind::FunctionCall(fc) = &m.kind else {
            panic!()
        };
        assert_eq!(fc.name, "sendEmail");
        assert_eq!(
            fc.arguments.get("emailAddress"),
            Some(&json!("john@example.com"))
        );
        assert_eq!(m.call, CallInfo::default());
    }

    #[test]
    fn a_function_call_without_function_call_is_an_invalid_shape() {
        let r = parse_vapi(br#"{"message":{"type":"function-call","functionCall":"x"}}"#);
        assert!(matches!(r, Err(WireError::InvalidShape(_))));
    }

    #[test]
    fn transcripts_parse_with_both_type_spellings() {
        let m = parse_vapi(fixture!("transcript.docs.json")).unwrap();
        assert_eq!(
            m.kind,
            VapiKind::Transcript {
                role: "user".into(),
                transcript_type: "partial".into(),
                text: "I'd like to book...".into()
            }
        );
        let m = parse_value(
            json!({"message": {"type": "transcript[transcriptType=\"final\"]",
            "role": "assistant", "transcript": "Booked."}}),
        );
        assert_eq!(
            m.kind,
            VapiKind::Transcript {
                role: "assistant".into(),
                transcript_type: "final".into(),
                text: "Booked.".into()
            }
        );
        assert_eq!(m.raw_type, "transcript[transcriptType=\"final\"]");
        let m = parse_value(json!({"type": "transcript", "transcript": "seed"}));
        let VapiKind::Transcript {
            transcript_type, ..
        } = m.kind
        else {
            panic!()
        };
        assert_eq!(transcript_type, "final");
    }

    #[test]
    fn hang_speech_and_conversation_updates_are_recognized() {
        let m = parse_vapi(fixture!("hang.reconstructed.json")).unwrap();
        assert_eq!(m.kind, VapiKind::Hang);
        assert_eq!(
            m.call.assistant_id.as_deref(),
            Some("054ea7e1-a5fc-4b9c-8c7c-9c6e80d21921")
        );
        assert_eq!(m.call.customer_number.as_deref(), Some("+14566836490"));
        let m = parse_vapi(fixture!("speech-update.docs.json")).unwrap();
        assert_eq!(
            m.kind,
            VapiKind::SpeechUpdate {
                status: "started".into(),
                role: "assistant".into()
            }
        );
        let m = parse_vapi(fixture!("conversation-update.reconstructed.json")).unwrap();
        let VapiKind::ConversationUpdate { messages } = &m.kind else {
            panic!()
        };
        assert_eq!(messages.as_array().unwrap().len(), 2);
        assert_eq!(
            m.call.org_id.as_deref(),
            Some("aeccb59a-73ea-4033-baae-51833f9ed571")
        );
    }

    #[test]
    fn assistant_requests_and_unknown_types_parse_ok() {
        let m = parse_value(json!({"message": {"type": "assistant-request", "call": {"id": "c"}}}));
        assert_eq!(m.kind, VapiKind::AssistantRequest);
        let m = parse_value(json!({"message": {"type": "transfer-destination-request",
            "call": {"id": "c"}, "timestamp": 1749546431600_i64}}));
        assert_eq!(m.kind, VapiKind::TransferDestinationRequest);
        assert_eq!(
            transfer_destination_reply("+15550001111", "Connecting you."),
            json!({"destination": {"type": "number", "number": "+15550001111",
                                   "message": "Connecting you."}})
        );
        let m = parse_value(json!({"message": {"type": "user-interrupted"}}));
        assert_eq!(m.kind, VapiKind::Unknown);
        assert_eq!(m.raw_type, "user-interrupted");
    }

    #[test]
    fn reply_builders_match_the_documented_fixtures() {
        let fx = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap();
        assert_eq!(
            tool_calls_reply(&[(
                Some("abc123".into()),
                "sendEmail".into(),
                "{ \"status\": \"sent\" }".into()
            )]),
            fx(fixture!("tool-calls.response.docs.json"))
        );
        assert_eq!(
            function_call_reply("Your email has been sent."),
            fx(fixture!("function-call.response.legacy.docs.json"))
        );
        assert_eq!(
            function_call_reply(
                "{ \"message\": \"Your email has been sent.\", \"email\": \"test@email.com\" }"
            ),
            fx(fixture!("function-call.response.legacy-object.docs.json"))
        );
        assert_eq!(
            assistant_request_reply_assistant_id("your-saved-assistant-id"),
            fx(fixture!(
                "assistant-request.response.assistant-id.docs.json"
            ))
        );
        assert_eq!(
            assistant_request_error("Sorry, not enough credits on your account, please refill."),
            fx(fixture!("assistant-request.response.error.docs.json"))
        );
        assert_eq!(
            tool_calls_reply(&[(None, "f".into(), "ok".into())]),
            json!({"results": [{"name": "f", "result": "ok"}]})
        );
        assert_eq!(tool_calls_reply(&[]), json!({"results": []}));
    }

    #[test]
    fn delivery_keys_identify_exact_redeliveries() {
        let body = fixture!("hang.reconstructed.json");
        let m = parse_vapi(body).unwrap();
        let k = delivery_key(&m, body);
        assert_eq!(k.len(), 64);
        assert_eq!(k, delivery_key(&m, body));
        assert_ne!(k, delivery_key(&m, b"{}"));
    }

    #[test]
    fn transcript_keys_are_short_stable_and_field_sensitive() {
        let t = DateTime::from_timestamp_millis(1_700_000_000_123);
        let k = transcript_key("user", "hello", t);
        assert_eq!(k.len(), 16);
        assert_eq!(k, transcript_key("user", "hello", t));
        assert_ne!(k, transcript_key("assistant", "hello", t));
        assert_ne!(k, transcript_key("user", "hello", None));
        assert_ne!(
            transcript_key("ab", "c", None),
            transcript_key("a", "bc", None)
        );
    }

    #[test]
    fn hostile_bodies_return_errors_not_panics() {
        for body in [
            &b""[..],
            b" ",
            b"null",
            b"[]",
            b"\"message\"",
            b"42",
            b"{",
            b"{\"message\":",
            b"\xff\xfe",
            b"{}",
            b"{\"message\":{}}",
            b"{\"type\":5}",
            b"{\"message\":{\"type\":null}}",
            b"{\"message\":[1]}",
            b"1e400",
        ] {
            assert!(
                parse_vapi(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let deep = "[".repeat(100_000);
        assert!(matches!(
            parse_vapi(deep.as_bytes()),
            Err(WireError::InvalidJson(_))
        ));
        let deep_obj = format!(
            "{{\"message\":{{\"type\":\"hang\",\"call\":{}}}}}",
            "{\"a\":".repeat(200)
        );
        assert!(parse_vapi(deep_obj.as_bytes()).is_err());
    }

    #[test]
    fn wrong_types_in_every_field_parse_leniently() {
        let junk = [
            json!(null),
            json!(true),
            json!(-1e308),
            json!(u64::MAX),
            json!("garbage"),
            json!([]),
            json!({}),
            json!([{"x": 1}]),
        ];
        let types = [
            "status-update",
            "end-of-call-report",
            "call-end",
            "call-start",
            "tool-calls",
            "function-call",
            "transcript",
            "transcript[transcriptType=",
            "hang",
            "speech-update",
            "conversation-update",
            "assistant-request",
            "x",
        ];
        let fields = [
            "status",
            "endedReason",
            "startedAt",
            "endedAt",
            "durationSeconds",
            "durationMs",
            "cost",
            "costs",
            "transcript",
            "messages",
            "recordingUrl",
            "summary",
            "artifact",
            "analysis",
            "call",
            "phoneNumber",
            "customer",
            "timestamp",
            "toolCallList",
            "toolCalls",
            "toolWithToolCallList",
            "functionCall",
            "role",
            "transcriptType",
        ];
        for t in types {
            for j in &junk {
                let mut msg = Map::new();
                msg.insert("type".into(), json!(t));
                for f in fields {
                    msg.insert(f.into(), j.clone());
                }
                let body = json!({"message": msg}).to_string();
                let r = parse_vapi(body.as_bytes());
                if t != "function-call" || j.is_object() {
                    assert!(r.is_ok(), "type {t} with {j}: {r:?}");
                }
                // Nested junk inside call/artifact/analysis too.
                let nested = json!({"message": {"type": t, "call": {"id": j, "customer": j, "phoneNumber": {"number": j},
                    "type": j, "startedAt": j, "duration": j}, "artifact": {"messages": j, "recording": j},
                    "analysis": {"summary": j, "structuredData": j, "successEvaluation": j}}});
                let _ = parse_vapi(nested.to_string().as_bytes());
            }
        }
    }

    #[test]
    fn huge_and_odd_numbers_do_not_overflow() {
        let m = parse_value(
            json!({"message": {"type": "end-of-call-report", "timestamp": 1e300,
            "durationSeconds": 1e308, "cost": "1e999", "startedAt": -9_223_372_036_854_775_807_i64,
            "endedAt": "99999999999999999999"}}),
        );
        let e = eoc(&m);
        assert_eq!(m.timestamp, None);
        assert_eq!(e.cost, None);
        assert_eq!(e.started_at, None);
        assert_eq!(e.ended_at, None);
        assert_eq!(e.duration_seconds, None, "an absurd duration is absent");
        let m = parse_value(json!({"message": {"type": "end-of-call-report",
            "durationSeconds": 43_200, "cost": 100_000.5}}));
        assert_eq!(
            eoc(&m).duration_seconds,
            Some(43_200.0),
            "a 12-hour call is believed"
        );
        assert_eq!(eoc(&m).cost, None);
    }
}
