//! The application layer: each use case is written once here, taking plain inputs and the
//! caller, and returning [`AppError`]; HTTP handlers, webhook ingestion and processes all
//! call it. Nothing here knows HTTP.
//!
//! - [`organizations`]: run an Organization command as a caller ([`organizations::execute_as`]),
//!   with the one idempotency-key scheme ([`command_meta`]).
//! - [`billing`]: the Stripe customer, checkout and portal sessions, and the billing
//!   processes' commands on a subscription.
//! - [`calls`]: what processes do to a call: record its analysis, ask for notifications,
//!   close it.

pub mod assistants;
pub mod audit;
pub mod billing;
pub mod calls;
pub mod contacts;
mod error;
pub mod onboarding;
pub mod organizations;
pub mod phone_numbers;
pub mod webhook_endpoints;

use eventlog::CommandMeta;
use uuid::Uuid;

pub use error::{AppError, DomainError, ErrorKind};

/// Who issues a command, and in which organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `user:<id>`, `api_key:<id>`, `provider:<name>` or `system:<what>`.
    pub actor: String,
    pub organization_id: Uuid,
}

impl Caller {
    pub fn new(actor: impl Into<String>, organization_id: Uuid) -> Self {
        Caller {
            actor: actor.into(),
            organization_id,
        }
    }

    /// A process acting on its own (`system:process:<kind>`).
    pub fn process(kind: &str, organization_id: Uuid) -> Self {
        Caller::new(format!("system:process:{kind}"), organization_id)
    }
}

/// The one idempotency-key scheme. A client's key is scoped by use-case family (`scope`),
/// organization and actor, so the same key sent by two users, or to two families of
/// endpoints, names two different commands; a retry by the same caller names the same one.
pub fn command_meta(caller: &Caller, scope: &str, client_key: Option<&str>) -> CommandMeta {
    let meta = CommandMeta::new(caller.actor.clone()).tenant(caller.organization_id);
    match client_key.map(str::trim).filter(|k| !k.is_empty()) {
        Some(key) => meta.idempotency_key(format!(
            "{scope}:{}:{}:{key}",
            caller.organization_id, caller.actor
        )),
        None => meta,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_scoped_by_use_case_organization_and_actor() {
        let org = Uuid::nil();
        let alice = Caller::new("user:alice", org);
        let bob = Caller::new("user:bob", org);
        let key = |caller: &Caller, scope: &str, k: Option<&str>| {
            command_meta(caller, scope, k).idempotency_key
        };
        assert_eq!(
            key(&alice, "contacts", Some(" k1 ")),
            key(&alice, "contacts", Some("k1"))
        );
        assert_ne!(
            key(&alice, "contacts", Some("k1")),
            key(&bob, "contacts", Some("k1"))
        );
        assert_ne!(
            key(&alice, "contacts", Some("k1")),
            key(&alice, "members", Some("k1"))
        );
        assert_eq!(key(&alice, "contacts", Some("  ")), None);
        assert_eq!(
            command_meta(&alice, "contacts", None).tenant_id,
            Some(org.to_string())
        );
    }
}
