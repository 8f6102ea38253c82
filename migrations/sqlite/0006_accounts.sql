-- Accounts read models (projector `accounts`): lookups for authentication and listings.
-- The aggregates stay the authority: a session or API key found here is re-checked against
-- its User / Organization aggregate before a request is admitted.
CREATE TABLE users (
    id         TEXT   PRIMARY KEY,
    email      TEXT   NOT NULL UNIQUE,
    name       TEXT   NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT   PRIMARY KEY,
    session_id TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_keys (
    key_hash        TEXT   PRIMARY KEY,
    id              TEXT   NOT NULL,
    organization_id TEXT   NOT NULL,
    name            TEXT   NOT NULL,
    scopes          TEXT   NOT NULL,
    created_at     INTEGER NOT NULL,
    revoked        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_organization ON api_keys (organization_id, created_at);

CREATE TABLE memberships (
    organization_id TEXT   NOT NULL,
    user_id         TEXT   NOT NULL,
    email           TEXT   NOT NULL,
    role            TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE organizations_list (
    id         TEXT   PRIMARY KEY,
    name       TEXT   NOT NULL,
    deleted   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
