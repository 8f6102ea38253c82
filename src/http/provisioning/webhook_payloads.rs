//! The schemas of the outbound webhook events, in the OpenAPI document: each event type's
//! envelope (`{id, type, created_at, organization_id, position, data}`) with its `data`,
//! offered as `example` in `GET /api/v1/webhook-endpoints/event-types` (one of them per type).

use chrono::{DateTime, TimeZone, Utc};
use poem_openapi::types::ToJSON;
use poem_openapi::{Enum, Object, Union};
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Debug, Clone, Object)]
pub struct CallStartedData {
    /// Our call id (the `/api/v1/calls/{id}` id).
    pub call_id: String,
    pub vapi_call_id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub phone_number_id: Option<String>,
    pub assistant_id: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
}

/// How a call ended.
#[derive(Debug, Clone, Object)]
pub struct CallEnding {
    pub ended_reason: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    /// US dollars.
    pub cost: Option<f64>,
    pub recording_url: Option<String>,
    /// VAPI's own summary, when it sent one.
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Object)]
pub struct CallEndedData {
    pub call_id: String,
    #[oai(flatten)]
    pub ending: CallEnding,
}

/// The post-call analysis.
#[derive(Debug, Clone, Object)]
pub struct CallAnalysisData {
    pub summary: String,
    pub call_type: Option<String>,
    pub sentiment: Option<String>,
    pub caller_name: Option<String>,
    pub action_items: Vec<String>,
    /// `low`, `normal` or `high`.
    pub urgency: Option<String>,
    /// `vapi`, `llm` or `vapi+llm`.
    pub source: Option<String>,
}

#[derive(Debug, Clone, Object)]
pub struct CallProcessedData {
    pub call_id: String,
    pub processed_at: DateTime<Utc>,
    /// `null` when no analysis could be made (the step's reason is in `/calls/{id}/processing`).
    pub analysis: Option<CallAnalysisData>,
    pub ended: Option<CallEnding>,
}

#[derive(Debug, Clone, Object)]
pub struct CallActionData {
    pub call_id: String,
    pub tool_call_id: String,
    /// The assistant's function (`takeMessage`, `scheduleCallback`, `logDriverCallout`,
    /// `transferCall`…).
    pub function: String,
    /// What it did: `kind` (`message_taken`, `callback_scheduled`, `driver_callout`,
    /// `transfer`, `unknown`) and its fields.
    pub action: Value,
    pub arguments: Value,
    /// What the assistant was told to say.
    pub reply: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Object)]
pub struct ContactData {
    pub contact_id: String,
    /// Absent on `contact.updated` (a number never changes).
    pub phone_number: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub notes: Option<String>,
    /// `manual` or `caller` (`contact.created`).
    pub source: Option<String>,
}

#[derive(Debug, Clone, Object)]
pub struct UsageThresholdData {
    /// The Stripe subscription whose plan's minutes these are.
    pub subscription_id: String,
    /// 80 or 100.
    pub threshold_percent: i64,
    pub used_minutes: f64,
    pub included_minutes: f64,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
}

/// Envelope types: each with its own constant `type`, so a payload matches one schema only.
macro_rules! envelope {
    ($name:ident, $kind:ident, $type_name:literal, $data:ty) => {
        #[derive(Debug, Clone, Copy, Enum)]
        pub enum $kind {
            #[oai(rename = $type_name)]
            Type,
        }

        #[derive(Debug, Clone, Object)]
        pub struct $name {
            /// Stable: the same on every attempt and replay (the `webhook-id` header).
            pub id: String,
            #[oai(rename = "type")]
            pub kind: $kind,
            pub created_at: DateTime<Utc>,
            pub organization_id: Uuid,
            /// The event's position in the log (increasing per endpoint).
            pub position: i64,
            pub data: $data,
        }
    };
}

envelope!(
    CallStartedEvent,
    CallStartedType,
    "call.started",
    CallStartedData
);
envelope!(CallEndedEvent, CallEndedType, "call.ended", CallEndedData);
envelope!(
    CallProcessedEvent,
    CallProcessedType,
    "call.processed",
    CallProcessedData
);
envelope!(
    CallActionEvent,
    CallActionType,
    "call.action.created",
    CallActionData
);
envelope!(
    ContactCreatedEvent,
    ContactCreatedType,
    "contact.created",
    ContactData
);
envelope!(
    ContactUpdatedEvent,
    ContactUpdatedType,
    "contact.updated",
    ContactData
);
envelope!(
    UsageThresholdEvent,
    UsageThresholdType,
    "usage.threshold_reached",
    UsageThresholdData
);

/// One outbound event, as delivered.
#[derive(Debug, Clone, Union)]
#[oai(one_of)]
pub enum WebhookEvent {
    CallStarted(CallStartedEvent),
    CallEnded(CallEndedEvent),
    CallProcessed(CallProcessedEvent),
    CallAction(CallActionEvent),
    ContactCreated(ContactCreatedEvent),
    ContactUpdated(ContactUpdatedEvent),
    UsageThreshold(UsageThresholdEvent),
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 14, minute, 0)
        .single()
        .unwrap_or_default()
}

fn ending() -> CallEnding {
    CallEnding {
        ended_reason: Some("customer-ended-call".into()),
        started_at: Some(at(2)),
        ended_at: Some(at(4)),
        duration_seconds: Some(120.0),
        cost: Some(0.21),
        recording_url: Some("https://storage.vapi.ai/recording.wav".into()),
        summary: Some("Sam called in sick for route 12.".into()),
    }
}

/// An example of `event_type`'s payload (what the README and the type list show).
pub fn example(event_type: &str) -> Option<WebhookEvent> {
    let org = Uuid::from_u128(0x0c0ffee);
    let call = "6f1c2a9e-3b7d-5e8f-9a0b-1c2d3e4f5a6b".to_string();
    let id = format!("evt_{}", Uuid::from_u128(0xe7e47).simple());
    macro_rules! wrap {
        ($variant:ident, $event:ident, $kind:ident, $data:expr) => {
            WebhookEvent::$variant($event {
                id,
                kind: $kind::Type,
                created_at: at(5),
                organization_id: org,
                position: 48_213,
                data: $data,
            })
        };
    }
    let contact = |phone: Option<&str>, source: Option<&str>| ContactData {
        contact_id: "2d3c4b5a-6978-4a1b-8c2d-3e4f5a6b7c8d".into(),
        phone_number: phone.map(str::to_string),
        name: Some("Sam Driver".into()),
        email: None,
        notes: Some("Night shift".into()),
        source: source.map(str::to_string),
    };
    Some(match event_type {
        "call.started" => wrap!(
            CallStarted,
            CallStartedEvent,
            CallStartedType,
            CallStartedData {
                call_id: call,
                vapi_call_id: "vapi-call-123".into(),
                direction: "inbound".into(),
                from_number: Some("+15551230000".into()),
                to_number: Some("+15559990000".into()),
                phone_number_id: None,
                assistant_id: None,
                started_at: Some(at(2)),
            }
        ),
        "call.ended" => wrap!(
            CallEnded,
            CallEndedEvent,
            CallEndedType,
            CallEndedData {
                call_id: call,
                ending: ending(),
            }
        ),
        "call.processed" => wrap!(
            CallProcessed,
            CallProcessedEvent,
            CallProcessedType,
            CallProcessedData {
                call_id: call,
                processed_at: at(5),
                analysis: Some(CallAnalysisData {
                    summary: "Sam called in sick for route 12; back Thursday.".into(),
                    call_type: Some("driver_callout".into()),
                    sentiment: Some("neutral".into()),
                    caller_name: Some("Sam".into()),
                    action_items: vec!["Cover route 12 on Wednesday".into()],
                    urgency: Some("high".into()),
                    source: Some("llm".into()),
                }),
                ended: Some(ending()),
            }
        ),
        "call.action.created" => wrap!(
            CallAction,
            CallActionEvent,
            CallActionType,
            CallActionData {
                call_id: call,
                tool_call_id: "call_abc".into(),
                function: "logDriverCallout".into(),
                action: json!({"kind": "driver_callout", "driver_name": "Sam",
                               "reason": "sick", "route_number": "12"}),
                arguments: json!({"driverName": "Sam", "reason": "sick", "routeNumber": "12"}),
                reply: "I've logged your call-out and notified dispatch.".into(),
                at: at(3),
            }
        ),
        "contact.created" => wrap!(
            ContactCreated,
            ContactCreatedEvent,
            ContactCreatedType,
            contact(Some("+15551230000"), Some("manual"))
        ),
        "contact.updated" => wrap!(
            ContactUpdated,
            ContactUpdatedEvent,
            ContactUpdatedType,
            contact(None, None)
        ),
        "usage.threshold_reached" => wrap!(
            UsageThreshold,
            UsageThresholdEvent,
            UsageThresholdType,
            UsageThresholdData {
                subscription_id: "sub_1QhTz2LkdIwHu7ix".into(),
                threshold_percent: 80,
                used_minutes: 400.0,
                included_minutes: 500.0,
                period_start: at(0),
                period_end: at(0) + chrono::Duration::days(30),
            }
        ),
        _ => return None,
    })
}

/// The example as JSON (for documentation tests).
pub fn example_json(event_type: &str) -> Option<Value> {
    example(event_type).and_then(|e| e.to_json())
}
