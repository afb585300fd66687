"""The read book: downloads' and lists' bookkeeping, group-committed and never lost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bridge.adapters.postgres.school_reads import ReadBook
from bridge.bootstrap import open_pool
from bridge.domain.access import Principal, Role
from bridge.services.ports.schools import AuditLine, ReadEntry, Receipt
from bridge.settings import Settings
from tests.conftest import MakeDatabase

pytestmark = pytest.mark.live

SCHOOL = Principal("tok_book", Role.SCHOOL, school_code="2111010502")


@pytest.fixture
async def pool(make_database: MakeDatabase) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(Settings(database_url=await make_database("xueji_book_test")))
    try:
        yield pool
    finally:
        await pool.close()


def download(child_id: int, *, via: str = "file") -> ReadEntry:
    number = f"L{child_id:018d}"
    sha = f"{child_id:064x}"
    return ReadEntry(
        audit=(AuditLine(SCHOOL, "record_file.read", "ok", number, "127.0.0.1", {"n": child_id}),),
        receipt=Receipt(SCHOOL, child_id, number, sha, via, None, None, 10, True, "127.0.0.1"),
        pulled=(child_id, "2111010502", sha),
    )


async def counts(pool: asyncpg.Pool) -> tuple[int, int, int]:
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM audit_log) AS a,"
        " (SELECT count(*) FROM record_file_receipts) AS r,"
        " (SELECT count(*) FROM school_pulls) AS p"
    )
    assert row is not None
    return row["a"], row["r"], row["p"]


async def test_concurrent_entries_share_statements_and_are_committed_on_return(
    pool: asyncpg.Pool,
) -> None:
    book = ReadBook(pool)
    await asyncio.gather(*(book.keep(download(i)) for i in range(1, 101)))
    assert await counts(pool) == (100, 100, 100)
    assert book.batches < 10  # one for the first, then whatever gathered meanwhile
    details = [json.loads(r["detail"]) for r in await pool.fetch("SELECT detail FROM audit_log")]
    assert sorted(d["n"] for d in details) == list(range(1, 101))


async def test_the_same_pull_twice_in_one_batch_is_one_row(pool: asyncpg.Pool) -> None:
    book = ReadBook(pool)
    await asyncio.gather(book.keep(download(7)), book.keep(download(7)), book.keep(download(7)))
    assert await counts(pool) == (3, 3, 1)


async def test_a_bad_entry_fails_alone_and_the_rest_of_its_batch_is_kept(
    pool: asyncpg.Pool,
) -> None:
    book = ReadBook(pool)
    results = await asyncio.gather(
        book.keep(download(1)),
        book.keep(download(2)),
        book.keep(download(3, via="carrier-pigeon")),  # breaks the receipts' CHECK
        book.keep(download(4)),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [
        type(None), type(None), asyncpg.CheckViolationError, type(None),
    ]  # fmt: skip
    assert await counts(pool) == (3, 3, 3)  # 3 was kept whole or not at all
    numbers = {r["child_id"] for r in await pool.fetch("SELECT child_id FROM school_pulls")}
    assert numbers == {1, 2, 4}


async def test_when_the_database_is_away_every_waiter_hears_it(
    make_database: MakeDatabase,
) -> None:
    pool = await open_pool(Settings(database_url=await make_database("xueji_book_test")))
    await pool.close()
    book = ReadBook(pool)
    results = await asyncio.gather(
        *(book.keep(download(i)) for i in range(1, 4)), return_exceptions=True
    )
    assert all(isinstance(r, asyncpg.InterfaceError) for r in results), results


async def test_a_cancelled_waiter_still_has_its_entry_written(pool: asyncpg.Pool) -> None:
    book = ReadBook(pool)
    first = asyncio.create_task(book.keep(download(1)))  # its batch is being written
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(book.keep(download(i))) for i in (2, 3)]  # the next batch
    await asyncio.sleep(0)
    for task in (first, *waiting):
        task.cancel()
    await asyncio.gather(first, *waiting, return_exceptions=True)
    await book.aclose()
    assert await counts(pool) == (3, 3, 3)


async def test_an_empty_entry_costs_nothing(pool: asyncpg.Pool) -> None:
    book = ReadBook(pool)
    await book.keep(ReadEntry())
    assert book.batches == 0
