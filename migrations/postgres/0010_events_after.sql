-- The log in commit order after a checkpoint, up to the oldest transaction still running (the
-- high-water mark), as ONE ordered index scan on events_commit_order.
--
-- Left alone, the planner misjudges the row comparison and the horizon and picks a bitmap scan
-- that sorts EVERY event after the checkpoint for each batch (quadratic over a rebuild). The
-- SET clauses pin the plan; inside a function they cost no extra round trip, where SET LOCAL
-- needed a transaction of its own around every read (four round trips per live read).
CREATE FUNCTION callflex_events_after(after_tx BIGINT, after_pos BIGINT, max_rows BIGINT)
RETURNS SETOF events
LANGUAGE sql STABLE
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
    SELECT * FROM events
    WHERE (transaction_id, global_position) > (after_tx, after_pos)
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
    ORDER BY transaction_id, global_position
    LIMIT max_rows
$$;
