//! CallFlex domain: commands, events and aggregates.
//!
//! This crate is pure: no I/O, no clocks, no randomness. Every timestamp and
//! identifier arrives inside a command, so the same command against the same
//! history always yields the same events.
//!
//! # Layout
//!
//! - [`common`]: value types shared by several aggregates (actors, money
//!   aliases) and the small helpers the aggregates use to emit events.
//! - [`call`]: one [`call::Call`] per phone call (VAPI call id). Tolerates
//!   out-of-order and lost webhook deliveries: any command on an unseen call
//!   first emits `CallStarted`.
//! - [`organization`]: one [`organization::Organization`] per tenant: members
//!   and roles, settings, phone numbers, assistants, contacts, integrations
//!   and outgoing webhook endpoints.
//! - [`process`]: one [`process::Process`] per instance of a durable process (post-call
//!   processing, a notification): its plan, each step's attempts and outcome, its retries.
//! - [`schedule`]: one [`schedule::Schedule`] per cron schedule: each run an event keyed by
//!   its scheduled time (once per cluster; missed runs caught up).
//! - [`subscription`]: one [`subscription::Subscription`] per Stripe
//!   subscription: status sync, invoices, usage metering and overage.
//! - [`telephony`]: one [`telephony::TwilioCall`] per Twilio CallSid: status callbacks that
//!   arrived before their VAPI call was known, kept until the call learns its CallSid.
//! - [`user`]: one [`user::User`] per account (registration, sessions, password
//!   resets) and one [`user::UserEmail`] per email address (uniqueness).
//!
//! Each aggregate module is split into `command.rs` (commands and the value
//! types they carry), `event.rs` (past-tense events, externally tagged, with
//! `event_type()` equal to the variant name and `event_version()` "1"),
//! `error.rs` (errors with stable `code()` strings) and `mod.rs` (state,
//! `apply` and the pure `decide` function). Every aggregate also exposes
//! `decide(&self, command) -> Result<Vec<Event>, Error>` so callers can run
//! the decision logic without an event store.
//!
//! Use [`replay`] to rebuild state from a list of events.

pub mod call;
pub mod common;
pub mod organization;
pub mod outbound;
pub mod process;
pub mod schedule;
pub mod subscription;
pub mod telephony;
pub mod user;

use cqrs_es::Aggregate;

/// Rebuilds an aggregate from its events: `A::default()` then `apply` each.
pub fn replay<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> A {
    let mut aggregate = A::default();
    for event in events {
        aggregate.apply(event);
    }
    aggregate
}
