//! Value types shared by several aggregates, and emit helpers.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;

/// A point in time (always UTC).
pub type Timestamp = DateTime<Utc>;

/// Money in US dollars as a float; VAPI reports call cost this way.
pub type UsdDollars = f64;

/// Money in the smallest currency unit (cents), as Stripe reports it.
pub type Cents = i64;

/// Who issued a command, parsed from strings like `user:<id>`,
/// `api_key:<id>`, `system` (or `system:<anything>`) and `provider:<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user, by user id.
    User(String),
    /// An organization API key, by key id.
    ApiKey(String),
    /// The backend itself (background jobs, migrations).
    System,
    /// An external provider webhook (VAPI, Twilio, Stripe), by provider name.
    Provider(String),
    /// Anything that does not match the forms above.
    Unknown(String),
}

impl Actor {
    /// Parses an actor string. Never fails; unrecognised input becomes
    /// [`Actor::Unknown`].
    pub fn parse(actor: &str) -> Self {
        if actor == "system" || actor.starts_with("system:") {
            Actor::System
        } else if let Some(name) = actor.strip_prefix("provider:") {
            Actor::Provider(name.to_string())
        } else if let Some(id) = actor.strip_prefix("user:") {
            Actor::User(id.to_string())
        } else if let Some(id) = actor.strip_prefix("api_key:") {
            Actor::ApiKey(id.to_string())
        } else {
            Actor::Unknown(actor.to_string())
        }
    }

    /// System and provider actors are trusted and skip role checks.
    pub fn is_trusted(&self) -> bool {
        matches!(self, Actor::System | Actor::Provider(_))
    }
}

/// Applies `event` to `state` and records it in `out`. Used by the pure
/// `decide` functions so later decisions in the same command see the effect
/// of earlier events.
pub(crate) fn emit<A: Aggregate>(state: &mut A, out: &mut Vec<A::Event>, event: A::Event) {
    state.apply(event.clone());
    out.push(event);
}

/// Writes already-decided events through the sink (which applies them).
pub(crate) async fn write_all<A: Aggregate>(
    aggregate: &mut A,
    sink: &EventSink<A>,
    events: Vec<A::Event>,
) {
    for event in events {
        sink.write(event, aggregate).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Actor;

    #[test]
    fn actor_strings_parse_into_their_kinds() {
        assert_eq!(Actor::parse("user:u1"), Actor::User("u1".into()));
        assert_eq!(Actor::parse("api_key:k1"), Actor::ApiKey("k1".into()));
        assert_eq!(Actor::parse("system"), Actor::System);
        assert_eq!(Actor::parse("system:billing"), Actor::System);
        assert_eq!(
            Actor::parse("provider:stripe"),
            Actor::Provider("stripe".into())
        );
        assert_eq!(Actor::parse("bob"), Actor::Unknown("bob".into()));
        assert!(Actor::parse("provider:vapi").is_trusted());
        assert!(!Actor::parse("user:u1").is_trusted());
    }
}
