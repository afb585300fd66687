-- What receiving primary schools took in (接收学籍档案) and when a school should look again.

-- school_visible_at moves whenever something a school sees of the child changes, so a
-- school's nightly job can ask only for what is new (`since`). A trigger keeps it, because
-- every writer of `children` (events, the worker, operators) must move it alike.
ALTER TABLE children ADD COLUMN school_visible_at timestamptz;

CREATE FUNCTION children_school_visible() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR NEW.school_code IS DISTINCT FROM OLD.school_code
       OR NEW.entry_year IS DISTINCT FROM OLD.entry_year
       OR NEW.student_number IS DISTINCT FROM OLD.student_number
       OR NEW.phase IS DISTINCT FROM OLD.phase
       OR NEW.set_aside_reason IS DISTINCT FROM OLD.set_aside_reason
       OR NEW.handoff -> 'registrations' IS DISTINCT FROM OLD.handoff -> 'registrations'
       OR NEW.handoff -> 'verified_file_sha256' IS DISTINCT FROM OLD.handoff -> 'verified_file_sha256'
       OR NEW.handoff -> 'arrival' IS DISTINCT FROM OLD.handoff -> 'arrival'
    THEN
        NEW.school_visible_at := clock_timestamp();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER children_school_visible BEFORE INSERT OR UPDATE ON children
    FOR EACH ROW EXECUTE FUNCTION children_school_visible();
UPDATE children SET school_visible_at = coalesce(updated_at, now());
CREATE INDEX children_school_list ON children (school_code, entry_year, child_id)
    WHERE school_code IS NOT NULL;

-- Every download of a record file, whole or in part (a receipt, 谁使用谁负责).
CREATE TABLE record_file_receipts (
    id           bigserial   PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    token_id     text        NOT NULL,
    role         text        NOT NULL,
    school_code  text,                          -- the downloader's, when a school
    county_code  text,                          -- the downloader's, when a county operator
    child_id     bigint      NOT NULL,
    student_number text      NOT NULL,
    sha256       text        NOT NULL,
    via          text        NOT NULL CHECK (via IN ('file', 'zip', 'not_modified')),
    range_start  bigint,
    range_end    bigint,                        -- inclusive, as in Content-Range
    bytes_sent   bigint      NOT NULL,
    complete     boolean     NOT NULL,          -- the file's last byte went out (or 304)
    remote       text
);
CREATE INDEX record_file_receipts_child ON record_file_receipts (child_id, at);
CREATE INDEX record_file_receipts_token ON record_file_receipts (token_id, at);

-- The admitting school has the current file: the child counts as pulled (state filter).
CREATE TABLE school_pulls (
    child_id        bigint      NOT NULL,
    school_code     text        NOT NULL,
    sha256          text        NOT NULL,
    first_pulled_at timestamptz NOT NULL DEFAULT now(),
    last_pulled_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (child_id, school_code, sha256)
);

-- Arrivals as schools reported them; the hand-over itself carries the one B6 acts on.
CREATE TABLE arrival_reports (
    id             bigserial   PRIMARY KEY,
    reported_at    timestamptz NOT NULL DEFAULT now(),
    child_id       bigint      NOT NULL,
    student_number text        NOT NULL,
    school_code    text        NOT NULL,
    arrived_on     date        NOT NULL,
    token_id       text        NOT NULL,
    outcome        text        NOT NULL        -- accepted, unchanged (already enrolled)
);
CREATE INDEX arrival_reports_child ON arrival_reports (child_id, reported_at);
