//! The outbound webhook event types an endpoint may subscribe to: the published list
//! (`GET /api/v1/webhook-endpoints/event-types`, the OpenAPI document's `webhooks`).

/// Each type with what it announces.
pub const EVENT_TYPES: &[(&str, &str)] = &[
    (
        "call.started",
        "A call reached one of the organization's numbers (or was placed).",
    ),
    (
        "call.ended",
        "A call ended: duration, cost, ended reason, recording.",
    ),
    (
        "call.processed",
        "A call's post-call processing finished: summary, call type, sentiment, extraction.",
    ),
    (
        "call.action.created",
        "The assistant acted during a call: a message taken, a callback scheduled, a driver \
         call-out logged, a transfer.",
    ),
    ("contact.created", "A contact was created."),
    ("contact.updated", "A contact was changed."),
    (
        "usage.threshold_reached",
        "The organization's used minutes crossed 80% or 100% of its plan's included minutes.",
    ),
];

/// Whether `name` is a published event type.
pub fn is_event_type(name: &str) -> bool {
    EVENT_TYPES.iter().any(|(t, _)| *t == name)
}

/// The first of `names` that is not a published event type.
pub fn unknown_event_type(names: &[String]) -> Option<&str> {
    names.iter().map(String::as_str).find(|n| !is_event_type(n))
}
