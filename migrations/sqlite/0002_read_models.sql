-- Read models. Every one is EVENTUALLY consistent: built by a checkpointed projector that
-- reads the log (see projections/). Times are epoch milliseconds, JSON is text, flags are 0/1:
-- the same SQL then runs on PostgreSQL and SQLite.

CREATE TABLE calls (
    id                 TEXT PRIMARY KEY,
    organization_id    TEXT NOT NULL,
    vapi_call_id       TEXT NOT NULL,
    provider_call_id   TEXT,
    direction          TEXT NOT NULL,
    status             TEXT NOT NULL,
    from_number        TEXT,
    to_number          TEXT,
    phone_number_id    TEXT,
    assistant_id       TEXT,
    started_at         INTEGER NOT NULL,
    ended_at           INTEGER,
    duration_seconds   REAL,
    ended_reason       TEXT,
    cost               REAL,
    cost_breakdown     TEXT,
    summary            TEXT,
    success_evaluation TEXT,
    structured_data    TEXT,
    call_type          TEXT,
    sentiment          TEXT,
    caller_name        TEXT,
    action_items       TEXT,
    recording_url      TEXT,
    stereo_recording_url TEXT,
    has_recording      INTEGER NOT NULL DEFAULT 0,
    hung_up            INTEGER NOT NULL DEFAULT 0,
    processed          INTEGER NOT NULL DEFAULT 0,
    segment_count      INTEGER NOT NULL DEFAULT 0,
    action_count       INTEGER NOT NULL DEFAULT 0,
    action_types       TEXT NOT NULL DEFAULT '',
    last_position      INTEGER NOT NULL
);
CREATE INDEX calls_org_started ON calls (organization_id, started_at DESC, id DESC);
CREATE INDEX calls_org_from ON calls (organization_id, from_number);
CREATE INDEX calls_provider ON calls (provider_call_id);

CREATE TABLE call_actions (
    call_id         TEXT NOT NULL,
    tool_call_id    TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    name            TEXT NOT NULL,
    action_type     TEXT NOT NULL,
    action_data     TEXT NOT NULL,
    arguments       TEXT NOT NULL,
    reply           TEXT NOT NULL,
    status          TEXT NOT NULL,
    at              INTEGER NOT NULL,
    PRIMARY KEY (call_id, tool_call_id)
);
CREATE INDEX call_actions_org ON call_actions (organization_id, at);

CREATE TABLE transcripts (
    call_id         TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    full_text       TEXT NOT NULL DEFAULT '',
    final_text      TEXT,
    messages        TEXT,
    segment_count   INTEGER NOT NULL DEFAULT 0,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX transcripts_org ON transcripts (organization_id);

CREATE TABLE transcript_segments (
    call_id            TEXT NOT NULL,
    segment_key        TEXT NOT NULL,
    organization_id    TEXT NOT NULL,
    seq                INTEGER NOT NULL,
    role               TEXT NOT NULL,
    text               TEXT NOT NULL,
    at                 INTEGER NOT NULL,
    seconds_from_start REAL,
    PRIMARY KEY (call_id, segment_key)
);
CREATE INDEX transcript_segments_order ON transcript_segments (call_id, seq);

CREATE TABLE contacts (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    phone_number    TEXT NOT NULL,
    name            TEXT,
    email           TEXT,
    notes           TEXT,
    source          TEXT NOT NULL,
    call_count      INTEGER NOT NULL DEFAULT 0,
    first_call_at   INTEGER,
    last_call_at    INTEGER,
    last_call_id    TEXT,
    last_summary    TEXT,
    deleted         INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX contacts_org_phone ON contacts (organization_id, phone_number);

-- Which calls were already counted for a contact (so a replayed start never counts twice).
CREATE TABLE contact_calls (
    organization_id TEXT NOT NULL,
    call_id         TEXT NOT NULL,
    contact_id      TEXT NOT NULL,
    PRIMARY KEY (organization_id, call_id)
);

CREATE TABLE usage_daily (
    organization_id TEXT NOT NULL,
    day             TEXT NOT NULL,
    calls           INTEGER NOT NULL DEFAULT 0,
    seconds         REAL NOT NULL DEFAULT 0,
    minutes         INTEGER NOT NULL DEFAULT 0,
    cost            REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, day)
);

CREATE TABLE billing_subscriptions (
    subscription_id      TEXT PRIMARY KEY,
    organization_id      TEXT,
    customer_id          TEXT,
    status               TEXT NOT NULL,
    plan                 TEXT,
    price_id             TEXT,
    subscription_item_id TEXT,
    included_minutes     INTEGER,
    current_period_start INTEGER,
    current_period_end   INTEGER,
    cancel_at_period_end INTEGER NOT NULL DEFAULT 0,
    period_minutes       INTEGER NOT NULL DEFAULT 0,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX billing_subscriptions_org ON billing_subscriptions (organization_id);

CREATE TABLE billing_invoices (
    invoice_id         TEXT PRIMARY KEY,
    subscription_id    TEXT NOT NULL,
    organization_id    TEXT,
    status             TEXT NOT NULL,
    amount_cents       INTEGER NOT NULL,
    currency           TEXT NOT NULL,
    period_start       INTEGER,
    period_end         INTEGER,
    hosted_invoice_url TEXT,
    at                 INTEGER NOT NULL
);
CREATE INDEX billing_invoices_org ON billing_invoices (organization_id, at DESC);

CREATE TABLE billing_periods (
    subscription_id  TEXT NOT NULL,
    period_end       INTEGER NOT NULL,
    organization_id  TEXT,
    period_start     INTEGER NOT NULL,
    total_minutes    INTEGER NOT NULL,
    included_minutes INTEGER NOT NULL,
    overage_minutes  INTEGER NOT NULL,
    overage_cents    INTEGER NOT NULL,
    reported         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (subscription_id, period_end)
);
