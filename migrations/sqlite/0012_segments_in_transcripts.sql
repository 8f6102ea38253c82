-- A call's transcript segments move into its `transcripts` row as a JSON array (oldest first):
-- they are only ever read per call, and a row per segment (with its two indexes) was three
-- quarters of what projecting transcripts cost.
ALTER TABLE transcripts ADD COLUMN segments TEXT NOT NULL DEFAULT '[]';
UPDATE transcripts SET segments = (
    SELECT json_group_array(json(segment)) FROM (
        SELECT json_object('key', segment_key, 'seq', seq, 'role', role, 'text', text,
                           'at', at, 'seconds_from_start', seconds_from_start) AS segment
        FROM transcript_segments s WHERE s.call_id = transcripts.call_id ORDER BY seq
    )
)
WHERE EXISTS (SELECT 1 FROM transcript_segments s WHERE s.call_id = transcripts.call_id);
DROP TABLE transcript_segments;
