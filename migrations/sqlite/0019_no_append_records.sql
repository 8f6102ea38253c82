-- A keyed append's events carry ids derived from its idempotency key
-- (`eventlog::event::keyed_event_id`): a replay collides on the unique event id, and the
-- first append's result (positions, version, count) is found again by those ids. The
-- separate record of each keyed append (a row and an index entry per webhook delivery) is
-- no longer written or read.
DROP TABLE event_appends;
