-- The contacts projector looks a batch's calls up by call id alone (a summary event knows its
-- call, not its organization); the primary key leads with the organization, so without this
-- index every batch scanned the whole table.
CREATE INDEX contact_calls_call ON contact_calls (call_id);
