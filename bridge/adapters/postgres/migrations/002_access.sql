-- Access control (谁使用谁负责): API tokens bound to one role and scope, and the audit log.

CREATE TABLE api_tokens (
    token_id     text        PRIMARY KEY,
    secret_hash  text        NOT NULL,          -- sha256 of the secret; the token is shown once
    role         text        NOT NULL CHECK (role IN ('school', 'county', 'province')),
    school_code  text        CHECK (school_code ~ '^\d{10}$'),
    county_code  text        CHECK (county_code ~ '^\d{6}$'),
    label        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    rotated_at   timestamptz,
    last_used_at timestamptz,
    sealed_at    timestamptz,                   -- unused for 180 days: refused until unsealed
    revoked_at   timestamptz,
    CHECK ((role = 'school') = (school_code IS NOT NULL)),
    CHECK ((role = 'county') = (county_code IS NOT NULL))
);

-- Who did what to which child, when, from where, with what outcome. Append-only.
CREATE TABLE audit_log (
    id             bigserial   PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    actor          text        NOT NULL,       -- token id, or 'cli:<user>' for the command line
    role           text,
    school_code    text,
    county_code    text,
    action         text        NOT NULL,
    student_number text,
    target_token   text,
    remote         text,
    outcome        text        NOT NULL,
    detail         jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_child ON audit_log (student_number, at) WHERE student_number IS NOT NULL;
CREATE INDEX audit_log_actor ON audit_log (actor, at);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
