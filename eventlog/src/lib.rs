//! The CallFlex append-only event log.
//!
//! # Layout
//! - [`backend`]: which database we talk to (PostgreSQL or embedded SQLite), connecting,
//!   migrating, and the few SQL dialect differences.
//! - [`event`]: what goes into the log ([`NewEvent`]) and what comes out ([`StoredEvent`]),
//!   with the metadata every event carries and the commit-ordered [`Checkpoint`].
//! - [`store`]: [`EventStore`]: transactional appends with optimistic concurrency and
//!   idempotency keys, stream reads, and "everything after checkpoint C" reads in commit order.
//! - [`group_commit`]: on PostgreSQL, concurrent appends to different streams share one
//!   statement (one round trip, one commit) when the writer slots are busy.
//! - [`snapshot`]: snapshot rows (our own: cqrs-es 0.5's snapshot store double-applies events).
//! - `gate`: commands to one stream inside one process take turns (no self-inflicted
//!   conflicts when a provider's deliveries of one call overlap).
//! - [`repository`]: [`AggregateRepository`]: load (snapshot + tail), handle a cqrs-es command,
//!   append the resulting events, retry on conflict.
//! - [`upcast`]: raw-JSON upcasters applied before deserializing old event versions.
//! - [`wake`]: wake-ups for log consumers (LISTEN/NOTIFY on PostgreSQL, in-process otherwise).
//! - [`side`]: a row of another table committed with an append (the raw delivery beside
//!   the events it produced).
//! - [`timing`]: how long a request waited on its appends (reported in `Server-Timing`).
//! - [`checkpoint`]: consumer checkpoints stored inside the consumer's own transaction.

pub mod activity;
pub mod backend;
pub mod checkpoint;
pub mod context;
pub mod error;
pub mod event;
mod gate;
pub mod group_commit;
pub mod json;
pub mod leadership;
pub mod repository;
pub mod side;
pub mod snapshot;
pub mod store;
pub mod testing;
pub mod timing;
pub mod upcast;
pub mod wake;

pub use activity::ActivityFilter;
pub use backend::Backend;
pub use error::StoreError;
pub use event::{
    Append, AppendResult, Checkpoint, CommandMeta, EventMetadata, NewEvent, StoredEvent,
};
pub use group_commit::GroupCommitStats;
pub use repository::{AggregateRepository, ExecuteError, Executed};
pub use store::EventStore;
pub use upcast::Upcasters;

/// Milliseconds since the Unix epoch: how every timestamp column is stored (portable across
/// both backends and the sqlx `Any` driver).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
