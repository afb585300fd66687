-- Reconciliation runs and their findings, working-day schedules, operator recovery work.

-- Official schedules for years chinese-calendar does not know (loaded by an operator).
CREATE TABLE calendar_years (
    year       integer     PRIMARY KEY,
    schedule   jsonb       NOT NULL,               -- {"year", "holidays", "working_days"}
    source     text,
    loaded_by  text        NOT NULL,
    loaded_at  timestamptz NOT NULL DEFAULT now()
);

-- One reconciliation of one cohort; counts stay after old runs' items are pruned.
CREATE TABLE recon_runs (
    run_id       bigserial   PRIMARY KEY,
    entry_year   integer     NOT NULL,
    trigger      text        NOT NULL,              -- schedule, cli, api, console
    actor        text,
    status       text        NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'finished', 'failed')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    as_of        date        NOT NULL,              -- the day deadlines were judged on
    provisional  boolean     NOT NULL DEFAULT false,
    sides        jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- items seen on each side
    counts       jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- category -> children
    repairs      integer     NOT NULL DEFAULT 0,
    error        text
);
CREATE INDEX recon_runs_year ON recon_runs (entry_year, run_id DESC);

-- What one run found: one row per child and category (a child may be in several).
CREATE TABLE recon_items (
    run_id            bigint      NOT NULL REFERENCES recon_runs ON DELETE CASCADE,
    category          text        NOT NULL,
    student_number    text        NOT NULL,
    county_code       text,
    kindergarten_code text,
    school_code       text,
    detail            jsonb,
    since             timestamptz,                   -- first run that found it, in a row
    PRIMARY KEY (run_id, category, student_number)
);

-- Identity numbers seen by a run, for two_numbers_one_identity; emptied after the run.
CREATE UNLOGGED TABLE recon_identities (
    run_id         bigint NOT NULL,
    id_number      text   NOT NULL,
    student_number text   NOT NULL
);
CREATE INDEX recon_identities_run ON recon_identities (run_id, id_number);

-- Repairs a run made by itself (re-submit, re-upload).
CREATE TABLE recon_repairs (
    id             bigserial   PRIMARY KEY,
    run_id         bigint      NOT NULL REFERENCES recon_runs ON DELETE CASCADE,
    child_id       bigint      NOT NULL,
    student_number text        NOT NULL,
    category       text        NOT NULL,
    outcome        text        NOT NULL,             -- scheduled, skipped_busy, gone
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recon_repairs_run ON recon_repairs (run_id);

-- The ledger streamed in student-number order, byte-wise like the merge-join compares.
CREATE INDEX children_recon ON children (entry_year, student_number COLLATE "C");

-- When a hand-over was set aside, for "first/last seen" of the operators' groups.
ALTER TABLE children ADD COLUMN set_aside_at timestamptz;
CREATE FUNCTION children_set_aside_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.set_aside_reason IS DISTINCT FROM OLD.set_aside_reason THEN
        NEW.set_aside_at := CASE WHEN NEW.set_aside_reason IS NULL THEN NULL ELSE now() END;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER children_set_aside_at BEFORE UPDATE OF set_aside_reason ON children
    FOR EACH ROW EXECUTE FUNCTION children_set_aside_at();
UPDATE children SET set_aside_at = updated_at WHERE set_aside_reason IS NOT NULL;

-- Operators' retries of parked messages.
ALTER TABLE parked_messages ADD COLUMN retried_at timestamptz;
ALTER TABLE parked_messages ADD COLUMN retries integer NOT NULL DEFAULT 0;
ALTER TABLE parked_messages ADD COLUMN resolved_by text;

-- An operator's decision on a set-aside hand-over, valid for that set-aside only.
CREATE TABLE set_aside_resolutions (
    child_id     bigint      NOT NULL,
    at_childseq  bigint      NOT NULL,
    reason       text        NOT NULL,
    note         text        NOT NULL,
    resolved_by  text        NOT NULL,
    resolved_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (child_id, at_childseq, reason)
);

-- Operators' retries and what came of them (outcome is read from the target's state).
CREATE TABLE operator_retries (
    id           bigserial   PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('parked_message', 'handoff')),
    target       text        NOT NULL,              -- parked message id, or child id
    group_key    text,
    result       text        NOT NULL               -- republished, released, skipped_busy, ...
);
CREATE INDEX operator_retries_target ON operator_retries (kind, target, at DESC);

-- Console sessions: only a hash of the cookie is kept.
CREATE TABLE console_sessions (
    session_hash text        PRIMARY KEY,
    token_id     text        NOT NULL,
    csrf_token   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);

-- The key of pseudonyms in exports; stays in the data centre.
CREATE TABLE operator_secrets (
    name  text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO operator_secrets (name, value)
    VALUES ('export_pseudonym_key', replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));
