-- The hand-over ledger: one row per child, every number it held, its events, its files.

CREATE TABLE children (
    child_id        bigserial PRIMARY KEY,
    student_number  text        NOT NULL,
    status          text        NOT NULL,           -- preschool record status (fold of events)
    phase           text        NOT NULL,           -- where the hand-over stands
    entry_year      integer,
    county_code     text,
    kindergarten_code text,
    school_code     text,                           -- admitting school per the registry
    id_number       text,                           -- for three-way matching by identity
    deferred_until  date,
    set_aside_reason text,
    last_childseq   bigint      NOT NULL DEFAULT 0,
    handoff         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz,                    -- NULL: nothing left to do
    lease_owner     text,
    lease_until     timestamptz,
    version         bigint      NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    first_graduated_at timestamptz,                 -- start of the 10-working-day clock
    handed_over_at  timestamptz                     -- number and file both at the registry
);
CREATE UNIQUE INDEX children_student_number ON children (student_number);
CREATE INDEX children_due ON children (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX children_phase ON children (entry_year, phase);
CREATE INDEX children_school ON children (school_code, entry_year);
CREATE INDEX children_id_number ON children (id_number) WHERE id_number IS NOT NULL;

-- Every number a child has ever held: former numbers stay searchable.
CREATE TABLE child_numbers (
    student_number text   PRIMARY KEY,
    child_id       bigint NOT NULL REFERENCES children ON DELETE CASCADE
);
CREATE INDEX child_numbers_child ON child_numbers (child_id);

-- The child's event log, folded in childseq order to give its record.
CREATE TABLE child_events (
    child_id    bigint      NOT NULL REFERENCES children ON DELETE CASCADE,
    event_id    uuid        NOT NULL,
    childseq    bigint      NOT NULL,
    event_type  text        NOT NULL,
    body        bytea       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (child_id, event_id)
);

-- Inbox: an event id is processed once, whatever the broker redelivers.
CREATE TABLE inbox (
    event_id    uuid        PRIMARY KEY,
    child_id    bigint      NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Record files, content-addressed; kept after hand-over (the sending side keeps a copy).
CREATE TABLE record_files (
    sha256     text        PRIMARY KEY,
    size       integer     NOT NULL,
    media_type text        NOT NULL,
    content    bytea       NOT NULL,
    fetched_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE record_files ALTER COLUMN content SET STORAGE EXTERNAL; -- allows cheap substring reads

-- Every call to a registry, for the attempt log and for operators.
CREATE TABLE registry_calls (
    id           bigserial   PRIMARY KEY,
    child_id     bigint,
    operation    text        NOT NULL,
    status       integer,
    outcome      text        NOT NULL,
    duration_ms  integer     NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX registry_calls_child ON registry_calls (child_id, attempted_at);

-- Messages that are not events, set aside with the reason.
CREATE TABLE parked_messages (
    id           bigserial   PRIMARY KEY,
    message_id   text,
    routing_key  text,
    reason_code  text        NOT NULL,
    reason       text        NOT NULL,
    headers      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    body         bytea       NOT NULL,
    parked_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at  timestamptz,
    resolution   text
);
CREATE INDEX parked_messages_reason ON parked_messages (reason_code) WHERE resolved_at IS NULL;
