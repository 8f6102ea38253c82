-- The append-only event log (SQLite). Writers take the database write lock (BEGIN IMMEDIATE), so
-- positions are handed out in commit order and `transaction_id` is always 0: the
-- (transaction_id, position) checkpoint pair used on PostgreSQL degenerates to the position.
CREATE TABLE events (
    global_position INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id  INTEGER NOT NULL DEFAULT 0,
    aggregate_type  TEXT    NOT NULL,
    aggregate_id    TEXT    NOT NULL,
    sequence        INTEGER NOT NULL,
    event_type      TEXT    NOT NULL,
    event_version   INTEGER NOT NULL,
    payload         TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    correlation_id  TEXT    NOT NULL,
    causation_id    TEXT,
    actor           TEXT    NOT NULL,
    tenant_id       TEXT,
    recorded_at     INTEGER NOT NULL,
    metadata        TEXT    NOT NULL DEFAULT '{}',
    CONSTRAINT events_stream_sequence UNIQUE (aggregate_type, aggregate_id, sequence),
    CONSTRAINT events_event_id UNIQUE (event_id)
) STRICT;
CREATE INDEX events_tenant ON events (tenant_id, global_position);

CREATE TABLE event_appends (
    idempotency_key TEXT PRIMARY KEY,
    aggregate_type  TEXT    NOT NULL,
    aggregate_id    TEXT    NOT NULL,
    first_position  INTEGER NOT NULL,
    last_position   INTEGER NOT NULL,
    last_sequence   INTEGER NOT NULL,
    event_count     INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
) STRICT;

CREATE TABLE snapshots (
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    sequence       INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    taken_at       INTEGER NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
) STRICT;

CREATE TABLE consumer_checkpoints (
    name           TEXT PRIMARY KEY,
    transaction_id INTEGER NOT NULL DEFAULT 0,
    position       INTEGER NOT NULL DEFAULT 0,
    updated_at     INTEGER NOT NULL DEFAULT 0
) STRICT;
