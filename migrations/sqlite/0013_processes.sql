-- Durable processes (src/processes). `process_work` is each instance's timer: when its worker
-- next has something to do (`due_at`, NULL once completed) and a summary for /health. The
-- instance's progress itself is its `process` stream in the log; this row is only an index
-- over it, written by the process's starter (with its checkpoint, in one transaction) and by
-- its worker. Never rebuilt: a rebuild would start every process again.
CREATE TABLE process_work (
    kind            TEXT NOT NULL,
    subject         TEXT NOT NULL,
    organization_id TEXT,
    input           TEXT NOT NULL,
    status          TEXT NOT NULL,
    due_at          BIGINT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    failed_steps    TEXT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (kind, subject)
);
CREATE INDEX process_work_due ON process_work (kind, due_at) WHERE due_at IS NOT NULL;

-- Read model: one row per notification (an SMS or an email to one recipient), projected from
-- the `notification` processes' events.
CREATE TABLE notifications (
    id                  TEXT PRIMARY KEY,
    organization_id     TEXT NOT NULL,
    call_id             TEXT,
    reason              TEXT NOT NULL,
    channel             TEXT NOT NULL,
    recipient           TEXT NOT NULL,
    subject             TEXT,
    status              TEXT NOT NULL,
    provider_message_id TEXT,
    attempts            BIGINT NOT NULL DEFAULT 0,
    last_error          TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    last_position       BIGINT NOT NULL
);
CREATE INDEX notifications_org ON notifications (organization_id, created_at);
CREATE INDEX notifications_call ON notifications (call_id, created_at);
