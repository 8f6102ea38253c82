-- Raw provider deliveries, kept for audit beside the events they produced, and used to answer
-- an exact redelivery with the first answer. They hold personal data (phone numbers,
-- transcripts): see the README's retention section.
CREATE TABLE webhook_deliveries (
    provider        TEXT   NOT NULL,
    delivery_key    TEXT   NOT NULL,
    organization_id TEXT,
    message_type    TEXT,
    received_at     INTEGER NOT NULL,
    content_type    TEXT,
    body            TEXT   NOT NULL,
    status_code     INTEGER NOT NULL,
    response        TEXT   NOT NULL,
    first_position  INTEGER NOT NULL DEFAULT 0,
    last_position   INTEGER NOT NULL DEFAULT 0,
    event_count     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, delivery_key)
);
CREATE INDEX webhook_deliveries_org ON webhook_deliveries (organization_id, received_at);
