-- Search: keep the parsed tsvector in a stored generated column, so ranking many matches does
-- not re-parse every transcript (measured: a word in every transcript of a 10,000-call
-- organization took ~1 s with the expression index).
ALTER TABLE transcript_search
    ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED;
CREATE INDEX transcript_search_tsv ON transcript_search USING GIN (tsv);
DROP INDEX transcript_search_fts;
