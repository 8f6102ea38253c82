-- Every request to an outbound provider (VAPI, Twilio, Stripe, Resend, LLM): what was sent,
-- what came back, and whether it only ran in sandbox mode (no credentials: recorded, not sent).
CREATE TABLE outbound_requests (
    id              TEXT   PRIMARY KEY,
    provider        TEXT   NOT NULL,
    method          TEXT   NOT NULL,
    url             TEXT   NOT NULL,
    body            TEXT   NOT NULL,
    idempotency_key TEXT,
    sandbox         INTEGER NOT NULL,
    status          INTEGER,
    response        TEXT,
    attempts        INTEGER NOT NULL DEFAULT 1,
    organization_id TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX outbound_requests_provider ON outbound_requests (provider, created_at);
