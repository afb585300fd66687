"""Keys of the record files at start, sealing files stored in the clear, and key rotation,
on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys

import asyncpg
import pytest

from bridge.adapters.file_crypto import FileKeys, new_key_line, open_file
from bridge.adapters.postgres.audit import AuditLog
from bridge.adapters.postgres.file_keys import FileKeyStore
from bridge.adapters.postgres.record_files import RecordFileStore
from bridge.bootstrap import open_pool, running_bridge
from bridge.errors import FileKeysInvalid, RecordFilesInClear
from bridge.services.file_keys import FileKeyAdministration
from bridge.services.ports.files import SealedFile
from bridge.settings import Settings
from tests.conftest import MakeDatabase
from tests.support.bridge_process import settings_env

pytestmark = pytest.mark.live

K1, K2 = new_key_line("k1"), new_key_line("k2")
OTHER_K1 = new_key_line("k1")  # the same id, another key


def keys(text: str) -> FileKeys:
    return FileKeys.parse(text, setting="BRIDGE_FILE_KEYS")


def file_store(pool: asyncpg.Pool, with_keys: FileKeys) -> RecordFileStore:
    return RecordFileStore(pool, with_keys, audit=AuditLog(pool))


async def plaintext_rows(pool: asyncpg.Pool, n: int) -> dict[str, bytes]:
    """Files as a ledger from before encryption held them."""
    files = {}
    for i in range(n):
        content = f'{{"child": {i}, "notes": "health notes {i}"}}'.encode() + os.urandom(3000)
        sha = hashlib.sha256(content).hexdigest()
        files[sha] = content
        await pool.execute(
            "INSERT INTO record_files (sha256, size, media_type, content) VALUES ($1, $2, $3, $4)",
            sha, len(content), "application/json", content,
        )  # fmt: skip
    return files


async def opened(pool: asyncpg.Pool, with_keys: FileKeys, sha: str) -> bytes:
    row = await pool.fetchrow("SELECT * FROM record_files WHERE sha256 = $1", sha)
    assert row is not None and row["content"] is None
    sealed = SealedFile(row["key_id"], row["wrapped_key"], row["nonce_prefix"], row["ciphertext"])
    return open_file(with_keys, sha, row["size"], sealed)


async def test_no_key_means_no_start_and_the_message_says_which_setting(
    bridge_settings: Settings,
) -> None:
    with pytest.raises(FileKeysInvalid, match="BRIDGE_FILE_KEYS"):
        async with running_bridge(bridge_settings.model_copy(update={"file_keys": None})):
            pass


async def test_the_command_refuses_to_run_without_a_key_and_without_a_traceback(
    bridge_settings: Settings,
) -> None:
    env = settings_env(bridge_settings.model_copy(update={"file_keys": None}))
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "bridge", "run"], env=env, capture_output=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 4  # a setting is missing
    err = done.stderr.decode()
    assert "BRIDGE_FILE_KEYS" in err and "xueji files new-key" in err
    assert "Traceback" not in err


async def test_another_key_under_a_known_id_is_refused_at_start(bridge_settings: Settings) -> None:
    async with running_bridge(bridge_settings.model_copy(update={"file_keys": K1})):
        pass  # k1 is recorded with its check value
    wrong = bridge_settings.model_copy(update={"file_keys": OTHER_K1})
    with pytest.raises(FileKeysInvalid, match="'k1' is not the one"):
        async with running_bridge(wrong):
            pass


async def test_a_key_stored_files_use_must_be_configured(bridge_settings: Settings) -> None:
    pool = await open_pool(bridge_settings)
    try:
        await file_store(pool, keys(K1)).put("ab" * 32, "application/json", b"{}")
    finally:
        await pool.close()
    with pytest.raises(FileKeysInvalid, match="'k1', not in BRIDGE_FILE_KEYS"):
        async with running_bridge(bridge_settings.model_copy(update={"file_keys": K2})):
            pass
    # With both, the bridge starts; new files are sealed under the first (k2).
    both = bridge_settings.model_copy(update={"file_keys": f"{K2},{K1}"})
    async with running_bridge(both) as bridge:
        assert bridge.files.keys.active_id == "k2"
        assert await bridge.files.content("ab" * 32) == b"{}"


async def test_the_bridge_will_not_run_while_files_are_in_the_clear_and_migrate_seals_them(
    bridge_settings: Settings,
) -> None:
    pool = await open_pool(bridge_settings)
    try:
        files = await plaintext_rows(pool, 5)
    finally:
        await pool.close()
    with pytest.raises(RecordFilesInClear, match=r"5 record files .* `xueji migrate`"):
        async with running_bridge(bridge_settings):
            pass
    env = settings_env(bridge_settings)
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "bridge", "migrate"], env=env,
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert "5 now, 0 left in the clear" in done.stdout.decode()
    async with running_bridge(bridge_settings) as bridge:
        for sha, content in files.items():
            assert await bridge.files.content(sha) == content
            assert await opened(bridge.pool, bridge.files.keys, sha) == content


async def test_migrate_without_a_key_refuses_while_files_are_in_the_clear(
    bridge_settings: Settings,
) -> None:
    pool = await open_pool(bridge_settings)
    try:
        await plaintext_rows(pool, 1)
    finally:
        await pool.close()
    env = settings_env(bridge_settings.model_copy(update={"file_keys": None}))
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "bridge", "migrate"], env=env,
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 4 and "BRIDGE_FILE_KEYS" in done.stderr.decode()


async def test_sealing_resumes_after_an_interruption_and_two_instances_share_the_work(
    make_database: MakeDatabase,
) -> None:
    pool = await open_pool(Settings(database_url=await make_database("xueji_seal")))
    try:
        files = await plaintext_rows(pool, 40)
        # Files are sealed in sha256 order: the last one is never in the bare first batch
        # below, which reports no damage (the service's batches that follow do).
        bad = max(files)
        await pool.execute(  # bytes that no longer match their digest
            "UPDATE record_files SET content = 'x'::bytea || content WHERE sha256 = $1", bad
        )
        k = keys(K1)
        store = FileKeyStore(pool, k)
        admin = FileKeyAdministration(store, file_store(pool, k))
        await store.check()
        first = await store.seal_batch(7)  # then "interrupted"
        assert first.done == 7 and await store.in_clear() == 33
        a, b = await asyncio.gather(admin.seal_in_clear(batch=3), admin.seal_in_clear(batch=3))
        assert first.done + a.done + b.done == 40 and await store.in_clear() == 0
        assert (set(a.damaged) | set(b.damaged) | set(first.damaged)) == {bad}
        for sha, content in files.items():
            if sha != bad:
                assert await opened(pool, k, sha) == content
        damaged = await pool.fetchval(
            "SELECT damaged_at IS NOT NULL FROM record_files WHERE sha256 = $1", bad
        )
        assert damaged  # reconciliation fetches it again (stored_file_damaged)
        audit = await AuditLog(pool).query(actor="system:record-files")
        assert [e.detail["sha256"] for e in audit] == [bad]
    finally:
        await pool.close()


async def test_rotation_rewraps_every_file_so_the_old_key_can_retire(
    make_database: MakeDatabase,
) -> None:
    pool = await open_pool(Settings(database_url=await make_database("xueji_rotate")))
    try:
        old = keys(K1)
        files = {}
        for i in range(25):
            content = os.urandom(70_000 + i)  # two segments each
            sha = hashlib.sha256(content).hexdigest()
            files[sha] = content
            await file_store(pool, old).put(sha, "application/pdf", content)
        await FileKeyStore(pool, old).check()
        before = await pool.fetch("SELECT sha256, ciphertext FROM record_files ORDER BY 1")

        both = keys(f"{K2},{K1}")
        store = FileKeyStore(pool, both)
        admin = FileKeyAdministration(store, file_store(pool, both))
        usage = {u.key_id: u for u in await store.usage()}
        assert usage["k1"].files == 25 and not usage["k1"].retirable and usage["k2"].files == 0
        first = await store.rewrap_batch(10)  # "interrupted" after one batch
        a, b = await asyncio.gather(admin.rotate(batch=4), admin.rotate(batch=4))
        assert first.done + a.done + b.done == 25
        usage = {u.key_id: u for u in await store.usage()}
        assert usage["k1"].files == 0 and usage["k1"].retirable and usage["k2"].files == 25
        # The segments were not touched, only the data keys re-wrapped.
        assert await pool.fetch("SELECT sha256, ciphertext FROM record_files ORDER BY 1") == before
        # The old key can go: the new one alone opens everything and passes the start check.
        only_new = keys(K2)
        await FileKeyStore(pool, only_new).check()
        for sha, content in files.items():
            assert await opened(pool, only_new, sha) == content
        # And the old key alone is refused: files need k2 now.
        with pytest.raises(FileKeysInvalid, match="'k2'"):
            await FileKeyStore(pool, old).check()
    finally:
        await pool.close()
