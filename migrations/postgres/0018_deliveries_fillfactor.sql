-- A delivery's row is inserted with its events and its answer (status, response, positions)
-- written by an update a moment later. With room left on the page the update is HOT: the new
-- version stays on the same page, no index entry is added, and its WAL record carries only
-- the changed tail (the raw body before it is not logged again). Pages filled to the brim
-- made every answer a full second copy of the body plus two index entries.
ALTER TABLE webhook_deliveries SET (fillfactor = 50);
