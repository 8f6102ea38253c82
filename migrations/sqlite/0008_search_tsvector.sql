-- PostgreSQL-only change (a stored tsvector column); SQLite's FTS5 table already stores its
-- index. Kept so both backends share migration numbers.
SELECT 1;
