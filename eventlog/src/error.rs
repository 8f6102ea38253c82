use thiserror::Error;

/// Failures of the event log itself. Domain errors never appear here.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another writer appended to the stream first (optimistic concurrency).
    #[error(
        "concurrency conflict on {aggregate_type}/{aggregate_id}: expected version {expected}"
    )]
    Conflict {
        aggregate_type: String,
        aggregate_id: String,
        expected: i64,
    },
    /// The idempotency key or an event id was already used by a different, committed append.
    #[error("duplicate append: {0}")]
    Duplicate(String),
    #[error("event payload could not be (de)serialized: {0}")]
    Serialization(#[from] serde_json::Error),
    #[error("unsupported database url: {0}")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

pub(crate) enum UniqueViolation {
    StreamSequence,
    EventId,
}

/// Classifies a unique-constraint violation by the constraint it hit. PostgreSQL names the
/// constraint; SQLite only names the columns in its message, so both are checked.
pub(crate) fn unique_violation(err: &sqlx::Error) -> Option<UniqueViolation> {
    let db = err.as_database_error()?;
    if !matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation) {
        return None;
    }
    let hint = db.constraint().unwrap_or_default().to_string() + " " + db.message();
    if hint.contains("events_stream_sequence") || hint.contains("events.sequence") {
        Some(UniqueViolation::StreamSequence)
    } else if hint.contains("events_event_id") || hint.contains("events.event_id") {
        Some(UniqueViolation::EventId)
    } else {
        None
    }
}
