-- Record files at rest (issue #19): each file sealed under a data key of its own, the data
-- key wrapped by a key-encryption key named by its id (bridge/adapters/file_crypto.py).

-- `content` held files in the clear; `xueji migrate` seals them and empties it, and the
-- bridge refuses to run while any is left.
ALTER TABLE record_files ALTER COLUMN content DROP NOT NULL;
ALTER TABLE record_files
    ADD COLUMN ciphertext    bytea,         -- the sealed segments (bridge/domain/file_segments.py)
    ADD COLUMN key_id        text,          -- the key-encryption key that wraps the data key
    ADD COLUMN wrapped_key   bytea,         -- the file's data key, wrapped (AES key wrap)
    ADD COLUMN nonce_prefix  bytea,
    ADD COLUMN erased_at     timestamptz,   -- ciphertext and data key erased (retention)
    ADD COLUMN erased_reason text,
    ADD COLUMN damaged_at    timestamptz;   -- failed authentication: fetched again to repair
-- Out of line and uncompressed (ciphertext does not compress): a range reads only its pages.
ALTER TABLE record_files ALTER COLUMN ciphertext SET STORAGE EXTERNAL;
ALTER TABLE record_files ADD CONSTRAINT record_files_sealed_whole CHECK (
    (ciphertext IS NULL) = (key_id IS NULL)
    AND (ciphertext IS NULL) = (wrapped_key IS NULL)
    AND (ciphertext IS NULL) = (nonce_prefix IS NULL)
    AND (content IS NULL OR ciphertext IS NULL));

-- What `xueji migrate` still has to seal (empty once done: the start-up check is a probe).
CREATE INDEX record_files_in_clear ON record_files (sha256) WHERE content IS NOT NULL;
-- Files by the key wrapping them: rotation's work list and `xueji files keys`.
CREATE INDEX record_files_by_key ON record_files (key_id) WHERE wrapped_key IS NOT NULL;
-- Files that failed authentication (reconciliation asks of every child: a tiny index).
CREATE INDEX record_files_damaged ON record_files (sha256) WHERE damaged_at IS NOT NULL;

-- Every key that ever wrapped a file, with a random value it wrapped: at start a key
-- configured under a known id must open that value (another key under the same id would
-- seal files that the old ones cannot be read beside). Ids are never reused.
CREATE TABLE record_file_keys (
    key_id        text        PRIMARY KEY,
    check_value   bytea       NOT NULL,
    first_used_at timestamptz NOT NULL DEFAULT now()
);
