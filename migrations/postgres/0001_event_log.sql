-- The append-only event log, its idempotency ledger, aggregate snapshots and consumer checkpoints.
--
-- Global order: `global_position` is an identity, so numbers are handed out at INSERT time and a
-- transaction holding a lower number can commit after a higher one. Readers therefore order by
-- (transaction_id, global_position) and only read rows whose transaction id is below the oldest
-- transaction still running (`pg_snapshot_xmin(pg_current_snapshot())`): nothing can ever appear
-- below that mark later, so a consumer's checkpoint never skips a late commit.
CREATE TABLE events (
    global_position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id  BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    aggregate_type  TEXT   NOT NULL,
    aggregate_id    TEXT   NOT NULL,
    sequence        BIGINT NOT NULL,
    event_type      TEXT   NOT NULL,
    event_version   INTEGER NOT NULL,
    payload         JSONB  NOT NULL,
    event_id        TEXT   NOT NULL,
    correlation_id  TEXT   NOT NULL,
    causation_id    TEXT,
    actor           TEXT   NOT NULL,
    tenant_id       TEXT,
    recorded_at     BIGINT NOT NULL,
    metadata        JSONB  NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT events_stream_sequence UNIQUE (aggregate_type, aggregate_id, sequence),
    CONSTRAINT events_event_id UNIQUE (event_id)
);
CREATE INDEX events_commit_order ON events (transaction_id, global_position);
CREATE INDEX events_tenant ON events (tenant_id, global_position);

-- One row per append that carried a client idempotency key: a retried append returns this.
CREATE TABLE event_appends (
    idempotency_key TEXT PRIMARY KEY,
    aggregate_type  TEXT   NOT NULL,
    aggregate_id    TEXT   NOT NULL,
    first_position  BIGINT NOT NULL,
    last_position   BIGINT NOT NULL,
    last_sequence   BIGINT NOT NULL,
    event_count     INTEGER NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE TABLE snapshots (
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    sequence       BIGINT  NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    taken_at       BIGINT  NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Where each projector / process manager has read up to, as a (transaction_id, position) pair.
CREATE TABLE consumer_checkpoints (
    name           TEXT PRIMARY KEY,
    transaction_id BIGINT NOT NULL DEFAULT 0,
    position       BIGINT NOT NULL DEFAULT 0,
    updated_at     BIGINT NOT NULL DEFAULT 0
);
