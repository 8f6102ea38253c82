//! What an integrator hears: the outbound events a log event becomes, in one envelope:
//! `{id, type, created_at, organization_id, position, data}`. `id` is stable (derived from
//! the log event's id): it is the `webhook-id` a receiver deduplicates on, the same on every
//! attempt and replay.

use aggregates::call::{CallEvent, EndReport};
use aggregates::organization::OrganizationEvent;
use aggregates::subscription::SubscriptionEvent;
use eventlog::StoredEvent;
use projections::DomainEvent;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// One outbound event, before it is addressed to an endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    pub organization_id: Uuid,
    pub event_type: &'static str,
    /// The envelope sent (for `call.processed`, `data` is completed at send time from the
    /// call's events up to this one: see [`assemble_processed`]).
    pub envelope: Value,
}

/// The outbound event `event` becomes, if any.
pub fn outbound(stored: &StoredEvent, event: &DomainEvent) -> Option<Outbound> {
    let organization_id = stored
        .metadata
        .tenant_id
        .as_deref()
        .and_then(|t| Uuid::parse_str(t).ok())?;
    let call_id = &stored.aggregate_id;
    let (event_type, data) = match event {
        DomainEvent::Call(CallEvent::CallStarted {
            vapi_call_id,
            from_number,
            to_number,
            direction,
            phone_number_id,
            assistant_id,
            started_at,
            ..
        }) => (
            "call.started",
            json!({
                "call_id": call_id,
                "vapi_call_id": vapi_call_id,
                "direction": direction,
                "from_number": from_number,
                "to_number": to_number,
                "phone_number_id": phone_number_id,
                "assistant_id": assistant_id,
                "started_at": started_at,
            }),
        ),
        DomainEvent::Call(CallEvent::CallEnded { report }) => {
            ("call.ended", ended(call_id, report))
        }
        DomainEvent::Call(CallEvent::CallProcessed { at }) => (
            "call.processed",
            json!({ "call_id": call_id, "processed_at": at }),
        ),
        DomainEvent::Call(CallEvent::FunctionCallHandled { invocation }) => (
            "call.action.created",
            json!({
                "call_id": call_id,
                "tool_call_id": invocation.tool_call_id,
                "function": invocation.name,
                "action": tagged(serde_json::to_value(&invocation.action).unwrap_or(Value::Null)),
                "arguments": invocation.arguments,
                "reply": invocation.reply,
                "at": invocation.at,
            }),
        ),
        DomainEvent::Organization(OrganizationEvent::ContactCreated {
            contact_id,
            phone_number,
            name,
            email,
            notes,
            source,
        }) => (
            "contact.created",
            json!({
                "contact_id": contact_id,
                "phone_number": phone_number,
                "name": name,
                "email": email,
                "notes": notes,
                "source": source,
            }),
        ),
        DomainEvent::Organization(OrganizationEvent::ContactUpdated {
            contact_id,
            name,
            email,
            notes,
        }) => {
            let mut changed = Map::new();
            changed.insert("contact_id".into(), json!(contact_id));
            for (key, value) in [("name", name), ("email", email), ("notes", notes)] {
                if let Some(value) = value {
                    changed.insert(key.into(), json!(value));
                }
            }
            ("contact.updated", Value::Object(changed))
        }
        DomainEvent::Subscription(SubscriptionEvent::UsageThresholdReached {
            period_start,
            period_end,
            threshold_pct,
            used_minutes,
            included_minutes,
        }) => (
            "usage.threshold_reached",
            json!({
                "subscription_id": stored.aggregate_id,
                "threshold_percent": threshold_pct,
                "used_minutes": used_minutes,
                "included_minutes": included_minutes,
                "period_start": epoch(*period_start),
                "period_end": epoch(*period_end),
            }),
        ),
        _ => return None,
    };
    let envelope = json!({
        "id": format!("evt_{}", stored.metadata.event_id.simple()),
        "type": event_type,
        "created_at": stored.metadata.received_at,
        "organization_id": organization_id,
        "position": stored.position,
        "data": data,
    });
    Some(Outbound {
        organization_id,
        event_type,
        envelope,
    })
}

/// The log event types the outbound `types` come from (a replay's filter).
pub fn log_event_types(types: &[String]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for t in types {
        out.extend_from_slice(match t.as_str() {
            "call.started" => &["CallStarted"][..],
            "call.ended" => &["CallEnded"][..],
            "call.processed" => &["CallProcessed"][..],
            "call.action.created" => &["FunctionCallHandled"][..],
            "contact.created" => &["ContactCreated"][..],
            "contact.updated" => &["ContactUpdated"][..],
            "usage.threshold_reached" => &["UsageThresholdReached"][..],
            _ => &[][..],
        });
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether `event` may become an outbound event (the starter's batch-skip hint).
pub fn may_be_outbound(event: &DomainEvent) -> bool {
    matches!(
        event,
        DomainEvent::Call(
            CallEvent::CallStarted { .. }
                | CallEvent::CallEnded { .. }
                | CallEvent::CallProcessed { .. }
                | CallEvent::FunctionCallHandled { .. }
        ) | DomainEvent::Organization(
            OrganizationEvent::ContactCreated { .. } | OrganizationEvent::ContactUpdated { .. }
        ) | DomainEvent::Subscription(SubscriptionEvent::UsageThresholdReached { .. })
    )
}

/// Stripe-style epoch seconds as a time.
fn epoch(secs: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(secs, 0)
}

fn ended(call_id: &str, report: &EndReport) -> Value {
    json!({
        "call_id": call_id,
        "ended_reason": report.ended_reason,
        "started_at": report.started_at,
        "ended_at": report.ended_at,
        "duration_seconds": report.duration_seconds,
        "cost": report.cost,
        "recording_url": report.recording_url,
        "summary": report.summary,
    })
}

/// `{"DriverCallout": {...}}` → `{"kind": "driver_callout", ...}`.
fn tagged(action: Value) -> Value {
    match action {
        Value::Object(map) if map.len() == 1 => {
            let (variant, fields) = map.into_iter().next().expect("one entry");
            let mut out = match fields {
                Value::Object(fields) => fields,
                other => Map::from_iter([("value".to_string(), other)]),
            };
            out.insert("kind".into(), json!(snake(&variant)));
            Value::Object(out)
        }
        Value::String(variant) => json!({ "kind": snake(&variant) }),
        other => other,
    }
}

fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// `call.processed`'s data from the call's events up to (and including) sequence
/// `up_to`: the analysis recorded then, and how the call ended. Built from the log, so every
/// attempt and replay sends the same thing.
pub fn assemble_processed(data: &Value, call_events: &[(i64, CallEvent)], up_to: i64) -> Value {
    let mut data = data.clone();
    let mut analysis = Value::Null;
    let mut end = Value::Null;
    for (sequence, event) in call_events {
        if *sequence > up_to {
            break;
        }
        match event {
            CallEvent::CallAnalyzed { analysis: a } => {
                analysis = json!({
                    "summary": a.summary,
                    "call_type": a.call_type,
                    "sentiment": a.sentiment,
                    "caller_name": a.caller_name,
                    "action_items": a.action_items,
                    "urgency": a.urgency,
                    "source": a.source,
                });
            }
            CallEvent::CallEnded { report } => {
                end = ended("", report);
                if let Some(map) = end.as_object_mut() {
                    map.remove("call_id");
                }
            }
            _ => {}
        }
    }
    data["analysis"] = analysis;
    data["ended"] = end;
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::call::{CallAction, Direction, FunctionInvocation};
    use aggregates::organization::ContactSource;
    use poem_openapi::types::ParseFromJSON;

    fn stored(aggregate_type: &str) -> StoredEvent {
        StoredEvent {
            position: 42,
            transaction_id: 1,
            aggregate_type: aggregate_type.into(),
            aggregate_id: "call-or-org".into(),
            sequence: 3,
            event_type: String::new(),
            event_version: 1,
            payload: Value::Null,
            metadata: eventlog::EventMetadata {
                event_id: Uuid::from_u128(9),
                correlation_id: Uuid::from_u128(10),
                causation_id: None,
                actor: "system:test".into(),
                tenant_id: Some(Uuid::from_u128(7).to_string()),
                received_at: chrono::Utc::now(),
                extra: Default::default(),
            },
            recorded_at: 0,
        }
    }

    /// Every payload the service sends parses as the schema the OpenAPI document publishes.
    #[test]
    fn every_payload_matches_its_published_schema() {
        use crate::http::provisioning::webhook_payloads::WebhookEvent;
        let at = chrono::Utc::now();
        let report = EndReport {
            ended_reason: Some("customer-ended-call".into()),
            started_at: Some(at),
            ended_at: Some(at),
            duration_seconds: Some(61.0),
            cost: Some(0.1),
            cost_breakdown: Value::Null,
            transcript: None,
            messages: Value::Null,
            recording_url: None,
            stereo_recording_url: None,
            summary: None,
            structured_data: Value::Null,
            success_evaluation: None,
            at,
        };
        let events = vec![
            (
                "call",
                DomainEvent::Call(CallEvent::CallStarted {
                    organization_id: Uuid::from_u128(7),
                    vapi_call_id: "v-1".into(),
                    from_number: Some("+15550001111".into()),
                    to_number: None,
                    direction: Direction::Inbound,
                    phone_number_id: None,
                    assistant_id: None,
                    provider_call_id: None,
                    started_at: Some(at),
                }),
            ),
            (
                "call",
                DomainEvent::Call(CallEvent::CallEnded {
                    report: report.clone(),
                }),
            ),
            ("call", DomainEvent::Call(CallEvent::CallProcessed { at })),
            (
                "call",
                DomainEvent::Call(CallEvent::FunctionCallHandled {
                    invocation: FunctionInvocation {
                        tool_call_id: "t1".into(),
                        name: "logDriverCallout".into(),
                        arguments: json!({"driverName": "Sam"}),
                        action: CallAction::DriverCallout {
                            driver_name: "Sam".into(),
                            reason: "sick".into(),
                            route_number: None,
                            expected_return: None,
                            additional_notes: None,
                        },
                        reply: "Noted.".into(),
                        at,
                        notifications: Vec::new(),
                    },
                }),
            ),
            (
                "organization",
                DomainEvent::Organization(OrganizationEvent::ContactCreated {
                    contact_id: "c1".into(),
                    phone_number: "+15550001111".into(),
                    name: Some("Sam".into()),
                    email: None,
                    notes: None,
                    source: ContactSource::Manual,
                }),
            ),
            (
                "organization",
                DomainEvent::Organization(OrganizationEvent::ContactUpdated {
                    contact_id: "c1".into(),
                    name: None,
                    email: Some("sam@example.com".into()),
                    notes: None,
                }),
            ),
            (
                "subscription",
                DomainEvent::Subscription(SubscriptionEvent::UsageThresholdReached {
                    period_start: 1_700_000_000,
                    period_end: 1_702_592_000,
                    threshold_pct: 80,
                    used_minutes: 400,
                    included_minutes: 500,
                }),
            ),
        ];
        for (aggregate_type, event) in events {
            let out = outbound(&stored(aggregate_type), &event).expect("an outbound event");
            let mut envelope = out.envelope.clone();
            if out.event_type == "call.processed" {
                let call_events = vec![(
                    1,
                    CallEvent::CallEnded {
                        report: report.clone(),
                    },
                )];
                envelope["data"] = assemble_processed(&envelope["data"], &call_events, 3);
            }
            let parsed = WebhookEvent::parse_from_json(Some(envelope.clone()));
            assert!(
                parsed.is_ok(),
                "{}: {envelope} does not match: {:?}",
                out.event_type,
                parsed.err().map(|e| e.into_message())
            );
        }
        for (name, _) in aggregates::outbound::EVENT_TYPES {
            assert!(
                crate::http::provisioning::webhook_payloads::example(name).is_some(),
                "{name} has an example"
            );
        }
    }

    #[test]
    fn an_action_is_named_by_its_kind() {
        let action = json!({"DriverCallout": {"driver_name": "Sam", "reason": "sick"}});
        assert_eq!(
            tagged(action),
            json!({"kind": "driver_callout", "driver_name": "Sam", "reason": "sick"})
        );
        assert_eq!(snake("CallbackScheduled"), "callback_scheduled");
    }
}
