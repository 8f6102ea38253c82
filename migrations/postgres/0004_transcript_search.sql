-- Full-text search over call transcripts (GET /api/v1/calls/search).
--
-- `transcript_search` is a read model of the transcripts projector (listed in its `tables()`,
-- so a blue/green rebuild copies and swaps it with the others): one row per call holding the
-- searchable text (VAPI's final transcript when known, else the running segment text).
-- PostgreSQL searches it with `to_tsvector('english', body)` through a GIN expression index,
-- ranks with `ts_rank` and highlights with `ts_headline`. `LIKE ... INCLUDING ALL` (rebuild)
-- copies the expression index.
CREATE TABLE transcript_search (
    call_id         TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    body            TEXT NOT NULL
);
CREATE INDEX transcript_search_org ON transcript_search (organization_id);
CREATE INDEX transcript_search_fts ON transcript_search
    USING GIN (to_tsvector('english', body));

-- Backfill from transcripts projected before this migration.
INSERT INTO transcript_search (call_id, organization_id, body)
SELECT call_id, organization_id, COALESCE(NULLIF(final_text, ''), full_text)
FROM transcripts
ON CONFLICT (call_id) DO NOTHING;
