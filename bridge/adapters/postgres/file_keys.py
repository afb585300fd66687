"""Which keys the database's record files need, and the batch work on them: sealing files
stored in the clear (``xueji migrate``) and re-wrapping data keys (``xueji files rotate-key``).

Each batch is one transaction over rows taken with FOR UPDATE SKIP LOCKED, so the work is
safe to interrupt (a batch is committed whole or not at all), to run again (the work list
is whatever is left), and to run on two instances at once (they take different rows).
"""

from __future__ import annotations

import hashlib

import asyncpg

from bridge.adapters.file_crypto import FileKeys, required, rewrap, seal
from bridge.errors import FileKeysInvalid, RecordFileDamaged
from bridge.services.ports.file_keys import Batch, KeyUsage
from bridge.services.ports.files import SealedFile

# The distinct key ids of sealed files, by skipping through the index: a few probes, however
# many files there are.
_KEYS_IN_USE = """
WITH RECURSIVE k AS (
    (SELECT key_id FROM record_files WHERE wrapped_key IS NOT NULL ORDER BY key_id LIMIT 1)
    UNION ALL
    SELECT (SELECT f.key_id FROM record_files f
             WHERE f.wrapped_key IS NOT NULL AND f.key_id > k.key_id ORDER BY f.key_id LIMIT 1)
      FROM k WHERE k.key_id IS NOT NULL)
SELECT key_id FROM k WHERE key_id IS NOT NULL
"""


class FileKeyStore:
    """The record_file_keys table and the batches over record_files (FileKeyBook)."""

    def __init__(self, pool: asyncpg.Pool, keys: FileKeys | None) -> None:
        """*keys* None: counting needs none; anything else is refused (FileKeysInvalid)."""
        self._pool = pool
        self._given_keys = keys

    @property
    def _keys(self) -> FileKeys:
        return required(self._given_keys)

    @property
    def active_id(self) -> str:
        """The id of the key that wraps new data keys."""
        return self._keys.active_id

    async def check(self) -> None:
        """Refuse (FileKeysInvalid) unless the configured keys can open every stored file.

        The active key is recorded with a check value the first time it is used; a key
        configured under a recorded id must open that value. Every key some sealed file
        uses must be configured.
        """
        active = self._keys.active_id
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO record_file_keys (key_id, check_value) VALUES ($1, $2)"
                " ON CONFLICT (key_id) DO NOTHING",
                active, self._keys.check_value(active),
            )  # fmt: skip
            recorded = await conn.fetch("SELECT key_id, check_value FROM record_file_keys")
            in_use = [r["key_id"] for r in await conn.fetch(_KEYS_IN_USE)]
        for row in recorded:
            key_id = row["key_id"]
            if self._keys.has(key_id) and not self._keys.opens(key_id, row["check_value"]):
                raise FileKeysInvalid(
                    f"the key configured as {key_id!r} is not the one this database's record"
                    f" files were sealed with under that id: give {key_id!r} its original key"
                    " (README: backing up the keys), and a new key a new id"
                )
        missing = [k for k in in_use if not self._keys.has(k)]
        if missing:
            raise FileKeysInvalid(
                f"stored record files use key(s) {', '.join(map(repr, missing))}, not in"
                " BRIDGE_FILE_KEYS: add them (`xueji files rotate-key` then moves every file"
                " to the active key)"
            )

    async def in_clear(self) -> int:
        """Files still stored in the clear (from before encryption); needs no key."""
        value: int = await self._pool.fetchval(
            "SELECT count(*) FROM record_files WHERE content IS NOT NULL"
        )
        return value

    async def counts(self) -> dict[str, int]:
        """Stored files by state: sealed, in the clear, erased, damaged."""
        row = await self._pool.fetchrow(
            "SELECT count(*) FILTER (WHERE ciphertext IS NOT NULL) AS sealed,"
            " count(*) FILTER (WHERE content IS NOT NULL) AS in_clear,"
            " count(*) FILTER (WHERE erased_at IS NOT NULL) AS erased,"
            " count(*) FILTER (WHERE damaged_at IS NOT NULL) AS damaged FROM record_files"
        )
        assert row is not None
        return dict(row)

    async def usage(self) -> list[KeyUsage]:
        """Every key known to the database or the configuration, with what it wraps."""
        rows = await self._pool.fetch(
            """
            SELECT coalesce(k.key_id, f.key_id) AS key_id, coalesce(f.files, 0) AS files,
                   coalesce(f.bytes, 0) AS bytes, k.first_used_at
              FROM record_file_keys k
              FULL JOIN (SELECT key_id, count(*) AS files,
                                sum(octet_length(ciphertext))::bigint AS bytes
                           FROM record_files WHERE wrapped_key IS NOT NULL GROUP BY key_id) f
                ON f.key_id = k.key_id
            """
        )
        known = {r["key_id"]: r for r in rows}
        out = []
        for key_id in sorted(set(known) | set(self._keys.ids)):
            r = known.get(key_id)
            out.append(
                KeyUsage(
                    key_id,
                    r["files"] if r else 0,
                    r["bytes"] if r else 0,
                    r["first_used_at"] if r else None,
                    self._keys.has(key_id),
                    key_id == self._keys.active_id,
                )
            )
        return out

    async def rewrap_batch(self, limit: int) -> Batch:
        """Re-wrap up to *limit* data keys that another key wraps under the active key."""
        active = self._keys.active_id
        async with self._pool.acquire() as conn, conn.transaction():
            others = [r["key_id"] for r in await conn.fetch(_KEYS_IN_USE) if r["key_id"] != active]
            rows = await conn.fetch(
                "SELECT sha256, key_id, wrapped_key, nonce_prefix FROM record_files"
                " WHERE key_id = ANY($1::text[]) AND wrapped_key IS NOT NULL"
                " AND damaged_at IS NULL ORDER BY sha256 LIMIT $2 FOR UPDATE SKIP LOCKED",
                others, limit,
            )  # fmt: skip
            done: list[tuple[str, bytes]] = []
            damaged: list[str] = []
            for r in rows:
                try:
                    new = rewrap(
                        self._keys,
                        SealedFile(r["key_id"], r["wrapped_key"], r["nonce_prefix"]),
                    )
                except RecordFileDamaged:
                    damaged.append(r["sha256"])
                else:
                    done.append((r["sha256"], new.wrapped_key))
            await conn.execute(
                "UPDATE record_files f SET key_id = $3, wrapped_key = u.wrapped"
                " FROM unnest($1::text[], $2::bytea[]) AS u(sha256, wrapped)"
                " WHERE f.sha256 = u.sha256",
                [d[0] for d in done], [d[1] for d in done], active,
            )  # fmt: skip
            # Left under the old key, out of the work list: reconciliation fetches it again.
            await conn.execute(
                "UPDATE record_files SET damaged_at = coalesce(damaged_at, now())"
                " WHERE sha256 = ANY($1::text[])",
                damaged,
            )
        return Batch(len(done), tuple(damaged))

    async def seal_batch(self, limit: int) -> Batch:
        """Seal up to *limit* files stored in the clear, emptying their plaintext.

        A file whose bytes no longer match its sha256 is sealed all the same (nothing stays
        in the clear) and reported damaged, for reconciliation to fetch it again.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT sha256, size, content FROM record_files WHERE content IS NOT NULL"
                " ORDER BY sha256 LIMIT $1 FOR UPDATE SKIP LOCKED",
                limit,
            )
            sealed = []
            damaged: list[str] = []
            for r in rows:
                content: bytes = r["content"]
                if len(content) != r["size"] or hashlib.sha256(content).hexdigest() != r["sha256"]:
                    damaged.append(r["sha256"])
                s = seal(self._keys, r["sha256"], content)
                sealed.append((r["sha256"], s, len(content)))
            await conn.execute(
                "UPDATE record_files f SET ciphertext = u.ciphertext, key_id = u.key_id,"
                " wrapped_key = u.wrapped_key, nonce_prefix = u.nonce_prefix, content = NULL,"
                " size = u.size,"
                " damaged_at = CASE WHEN u.sha256 = ANY($6::text[]) THEN now() END"
                " FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bytea[], $5::bytea[],"
                "             $7::int[])"
                " AS u(sha256, ciphertext, key_id, wrapped_key, nonce_prefix, size)"
                " WHERE f.sha256 = u.sha256",
                [x[0] for x in sealed], [x[1].ciphertext for x in sealed],
                [x[1].key_id for x in sealed], [x[1].wrapped_key for x in sealed],
                [x[1].nonce_prefix for x in sealed], damaged, [x[2] for x in sealed],
            )  # fmt: skip
        return Batch(len(sealed), tuple(damaged))

    async def reclaim(self) -> None:
        """VACUUM record_files: dead row versions hold the old bytes until vacuumed."""
        await self._pool.execute("VACUUM record_files")
