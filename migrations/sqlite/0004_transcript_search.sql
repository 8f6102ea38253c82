-- Full-text search over call transcripts (GET /api/v1/calls/search).
--
-- `transcript_search` is a read model of the transcripts projector (listed in its `tables()`,
-- so a blue/green rebuild copies and swaps it with the others): one row per call holding the
-- searchable text (VAPI's final transcript when known, else the running segment text).
-- On SQLite it is an FTS5 table (its own content; ranked with `bm25`, highlighted with
-- `snippet`). The rebuild's schema copier re-runs this `CREATE VIRTUAL TABLE` under the fresh
-- name (FTS5's shadow tables follow the virtual table), and FTS5 supports `ALTER TABLE ...
-- RENAME`, so the swap works unchanged. FTS5 has no unique constraint: the projector deletes
-- a call's row before inserting its new text.
CREATE VIRTUAL TABLE transcript_search USING fts5(
    call_id UNINDEXED,
    organization_id UNINDEXED,
    body,
    tokenize = 'porter unicode61'
);

-- Backfill from transcripts projected before this migration.
INSERT INTO transcript_search (call_id, organization_id, body)
SELECT call_id, organization_id, COALESCE(NULLIF(final_text, ''), full_text)
FROM transcripts;
