"""A token's last use is written at most once a minute, and only for a token that passes."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bridge.adapters.postgres.tokens import TokenStore
from bridge.bootstrap import open_pool
from bridge.domain.access import LAST_USED_RESOLUTION, Role
from bridge.errors import TokenSealed, Unauthenticated
from bridge.settings import Settings
from tests.conftest import MakeDatabase

pytestmark = pytest.mark.live


@pytest.fixture
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(Settings(database_url=await make_database("xueji_token_test")))
    try:
        yield pool
    finally:
        await pool.close()


async def last_used(pool: asyncpg.Pool, token_id: str) -> dt.datetime | None:
    value: dt.datetime | None = await pool.fetchval(
        "SELECT last_used_at FROM api_tokens WHERE token_id = $1", token_id
    )
    return value


async def used_ago(pool: asyncpg.Pool, token_id: str, seconds: float) -> dt.datetime:
    value: dt.datetime = await pool.fetchval(
        "UPDATE api_tokens SET last_used_at = now() - make_interval(secs => $2)"
        " WHERE token_id = $1 RETURNING last_used_at",
        token_id, seconds,
    )  # fmt: skip
    return value


async def test_last_use_is_written_at_most_once_a_minute(pool: asyncpg.Pool) -> None:
    store = TokenStore(pool)
    issued = await store.issue(Role.SCHOOL, school_code="2111010502")
    assert await last_used(pool, issued.token_id) is None
    await store.authenticate(issued.token)
    first = await last_used(pool, issued.token_id)
    assert first is not None
    for _ in range(3):
        await store.authenticate(issued.token)
    assert await last_used(pool, issued.token_id) == first
    recent = await used_ago(pool, issued.token_id, LAST_USED_RESOLUTION.total_seconds() - 5)
    await store.authenticate(issued.token)
    assert await last_used(pool, issued.token_id) == recent
    stale = await used_ago(pool, issued.token_id, LAST_USED_RESOLUTION.total_seconds() + 5)
    await store.authenticate(issued.token)
    moved = await last_used(pool, issued.token_id)
    assert moved is not None and moved - stale > LAST_USED_RESOLUTION


async def test_a_wrong_secret_or_a_sealed_token_never_counts_as_a_use(pool: asyncpg.Pool) -> None:
    store = TokenStore(pool)
    issued = await store.issue(Role.SCHOOL, school_code="2111010502")
    stale = await used_ago(pool, issued.token_id, 3600)
    forged = issued.token[:-4] + ("AAAA" if not issued.token.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthenticated):
        await store.authenticate(forged)
    assert await last_used(pool, issued.token_id) == stale
    await store.revoke(issued.token_id)
    with pytest.raises(Unauthenticated):
        await store.authenticate(issued.token)
    assert await last_used(pool, issued.token_id) == stale


async def test_a_token_unused_for_180_days_is_sealed_not_touched(pool: asyncpg.Pool) -> None:
    store = TokenStore(pool)
    issued = await store.issue(Role.SCHOOL, school_code="2111010502")
    overdue = await used_ago(pool, issued.token_id, 180 * 86400 + 60)
    with pytest.raises(TokenSealed) as sealed:
        await store.authenticate(issued.token)
    assert sealed.value.sealed_now == issued.token_id
    assert await last_used(pool, issued.token_id) == overdue
    with pytest.raises(TokenSealed) as again:
        await store.authenticate(issued.token)
    assert again.value.sealed_now is None  # sealed (and audited) once
    # Just inside the 180 days (less the resolution): still good, and the use is written.
    other = await store.issue(Role.SCHOOL, school_code="2111010502")
    await used_ago(pool, other.token_id, 180 * 86400 - 120)
    await store.authenticate(other.token)
    assert (await last_used(pool, other.token_id)) is not None
    info = await store.get(other.token_id)
    assert info is not None and info.state == "active"
    assert info.last_used_at is not None
    assert dt.datetime.now(dt.UTC) - info.last_used_at < dt.timedelta(minutes=1)
