-- Retention (issue #19): a child's record file and personal data are kept only for a while
-- after the hand-over completed (enrolled) or the cancellation took effect.

-- When the hand-over reached its end (phase enrolled or cancelled): retention counts from
-- here. A trigger keeps it, because every writer of `children` changes the phase alike; it
-- fires only when the phase changes.
ALTER TABLE children ADD COLUMN closed_at timestamptz;
ALTER TABLE children ADD COLUMN erased_at timestamptz;      -- personal data minimised
ALTER TABLE children ADD COLUMN erased_reason text;
CREATE FUNCTION children_closed_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.closed_at := CASE WHEN NEW.phase IN ('enrolled', 'cancelled') THEN now() END;
    RETURN NEW;
END $$;
CREATE TRIGGER children_closed_at BEFORE UPDATE OF phase ON children
    FOR EACH ROW WHEN (NEW.phase IS DISTINCT FROM OLD.phase)
    EXECUTE FUNCTION children_closed_at();
CREATE TRIGGER children_closed_at_insert BEFORE INSERT ON children
    FOR EACH ROW WHEN (NEW.phase IN ('enrolled', 'cancelled'))
    EXECUTE FUNCTION children_closed_at();
UPDATE children SET closed_at = updated_at WHERE phase IN ('enrolled', 'cancelled');
-- The purge's work list: closed children whose data is still whole.
CREATE INDEX children_retention ON children (closed_at)
    WHERE closed_at IS NOT NULL AND erased_at IS NULL;

-- Resolved parked messages are kept as long; then their bodies are replaced by a digest.
ALTER TABLE parked_messages ADD COLUMN erased_at timestamptz;

-- Each purge: when, up to which cut-off, and what it erased (the audit log has the lines).
CREATE TABLE retention_runs (
    run_id      bigserial   PRIMARY KEY,
    trigger     text        NOT NULL,          -- schedule, cli
    actor       text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    cutoff      timestamptz NOT NULL,
    children    integer     NOT NULL DEFAULT 0,
    files       integer     NOT NULL DEFAULT 0,
    parked      integer     NOT NULL DEFAULT 0,
    error       text
);
