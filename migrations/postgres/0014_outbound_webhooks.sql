-- Outbound webhooks (src/processes/webhooks).
--
-- Lanes: instances of one lane (a webhook endpoint) take their first turns in log order
-- (`seq`, the starting event's position). At most one instance of a lane is `pending` (due,
-- not yet begun); the others wait `queued` with no due time, and the worker makes the next
-- one pending when the pending one has had its first attempt. Retries do not hold the lane.
ALTER TABLE process_work ADD COLUMN lane TEXT;
ALTER TABLE process_work ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX process_work_lane ON process_work (kind, lane, status, seq) WHERE lane IS NOT NULL;

-- The webhook starter's own state (never rebuilt): which endpoint takes which event types,
-- as of the starter's checkpoint, so an event goes to the endpoints subscribed when it
-- happened. `dead_letter_streak` is kept by the delivery worker.
CREATE TABLE webhook_subscriptions (
    organization_id    TEXT NOT NULL,
    endpoint_id        TEXT NOT NULL,
    event_types        TEXT NOT NULL,
    disabled           BIGINT NOT NULL DEFAULT 0,
    dead_letter_streak BIGINT NOT NULL DEFAULT 0,
    last_dead_letter   TEXT,
    PRIMARY KEY (organization_id, endpoint_id)
);

-- Read models: each delivery of an event to an endpoint, and each of its attempts, projected
-- from the `webhook` processes' events.
CREATE TABLE outbound_deliveries (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL,
    endpoint_id      TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    event_position   BIGINT NOT NULL,
    replay_id        TEXT,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    last_status_code BIGINT,
    last_error       TEXT,
    next_attempt_at  BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    last_position    BIGINT NOT NULL
);
CREATE INDEX outbound_deliveries_endpoint ON outbound_deliveries (organization_id, endpoint_id, created_at);
CREATE INDEX outbound_deliveries_status ON outbound_deliveries (organization_id, status, created_at);

CREATE TABLE outbound_attempts (
    delivery_id     TEXT NOT NULL,
    position        BIGINT NOT NULL,
    organization_id TEXT NOT NULL,
    attempt         BIGINT NOT NULL,
    at              BIGINT NOT NULL,
    status_code     BIGINT,
    latency_ms      BIGINT,
    error           TEXT,
    response        TEXT,
    PRIMARY KEY (delivery_id, position)
);
