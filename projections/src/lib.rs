//! CallFlex read models and the checkpointed runner that builds them from the log.
//!
//! # Layout
//! - [`projector`]: the [`Projector`] trait, [`Tables`] (live or rebuild table names) and the
//!   decoded [`DomainEvent`] every projector matches on.
//! - [`runner`]: [`ProjectorRunner`]: reads the log after its checkpoint, applies a batch and
//!   stores the read-model changes and the new checkpoint in ONE transaction; wakes on new
//!   events, polls as a fallback, reports lag, waits for a position (read-your-writes).
//! - [`feed`]: [`LogFeed`], one read of the log shared by the live runners, spaced out under
//!   load.
//! - [`rebuild`]: blue/green rebuild of a projector into fresh tables, then an atomic swap.
//! - One module per read model: [`calls`] (calls + call actions), [`transcripts`],
//!   [`contacts`], [`usage`] (per organization per day), [`billing`] (subscriptions,
//!   invoices, closed periods), [`accounts`] (users, sessions, API keys, memberships and
//!   organizations: the lookups authentication starts from), [`notifications`] (each SMS
//!   and email the processes send, with its status).
//!
//! All read models are eventually consistent; none is updated inside a command's transaction.

pub mod accounts;
pub mod batch;
pub mod billing;
pub mod calls;
pub mod contacts;
pub mod feed;
pub mod notifications;
pub mod outbound;
pub mod projector;
pub mod rebuild;
pub mod replay;
pub mod runner;
pub mod sql;
pub mod transcripts;
pub mod upcasting;
pub mod usage;

use std::sync::Arc;

pub use feed::LogFeed;
pub use projector::{DomainEvent, ProjectionError, Projector, Tables};
pub use runner::{ProjectorHandle, ProjectorRunner, ProjectorStatus};

/// Every read model this service maintains, in a stable order.
pub fn all() -> Vec<Arc<dyn Projector>> {
    vec![
        Arc::new(calls::CallsProjector),
        Arc::new(transcripts::TranscriptsProjector),
        Arc::new(contacts::ContactsProjector),
        Arc::new(usage::UsageProjector),
        Arc::new(billing::BillingProjector),
        Arc::new(accounts::AccountsProjector),
        Arc::new(notifications::NotificationsProjector),
        Arc::new(outbound::OutboundDeliveriesProjector),
    ]
}
