-- The event that started a process instance: its correlation id carries on to the events the
-- instance records (a delivery, its call's processing and the notifications it sent share
-- one correlation id), and its id is their causation.
ALTER TABLE process_work ADD COLUMN correlation_id TEXT;
ALTER TABLE process_work ADD COLUMN causation_id TEXT;
