-- A parked message's properties (content type, message id, ...) as it arrived, encoded where
-- jsonb cannot hold a value as it is: an operator's retry republishes it faithfully, binary
-- CloudEvents (whose attributes travel in the headers) included.
ALTER TABLE parked_messages ADD COLUMN properties jsonb NOT NULL DEFAULT '{}'::jsonb;

-- Unexpected failures of a child's drives, counted per childseq: a newer event starts the
-- count again, so a child is set aside as internal_error only for what it holds now.
ALTER TABLE children ADD COLUMN drive_failures integer NOT NULL DEFAULT 0;
ALTER TABLE children ADD COLUMN drive_failures_at_childseq bigint NOT NULL DEFAULT 0;
