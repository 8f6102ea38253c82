-- OAuth tokens of connected integrations (google_calendar, hubspot), one row per
-- organization and provider. Kept out of the event log on purpose: tokens are secrets that
-- are replaced on every reconnect and deleted on disconnect; the log records only that an
-- integration was connected (IntegrationConnected, without the tokens).
CREATE TABLE integration_credentials (
    organization_id TEXT   NOT NULL,
    provider        TEXT   NOT NULL,
    access_token    TEXT   NOT NULL,
    refresh_token   TEXT,
    token_type      TEXT,
    scope           TEXT,
    expires_at      BIGINT,
    sandbox         BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (organization_id, provider)
);
