-- PostgreSQL leaves room on webhook_deliveries' pages for the answer's update (fillfactor);
-- SQLite has no such setting. Kept so both backends number their migrations alike.
SELECT 1;
