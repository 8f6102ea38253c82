-- A call's transcript segments move into its `transcripts` row as a JSON array (oldest first):
-- they are only ever read per call, and a row per segment (with its two indexes) was three
-- quarters of what projecting transcripts cost.
ALTER TABLE transcripts ADD COLUMN segments TEXT NOT NULL DEFAULT '[]';
UPDATE transcripts t SET segments = s.segments
FROM (
    SELECT call_id,
           json_agg(json_build_object('key', segment_key, 'seq', seq, 'role', role,
                                      'text', text, 'at', at,
                                      'seconds_from_start', seconds_from_start)
                    ORDER BY seq)::text AS segments
    FROM transcript_segments GROUP BY call_id
) s
WHERE s.call_id = t.call_id;
DROP TABLE transcript_segments;
