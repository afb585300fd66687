"""The school API's hot reads, each with its token check, shared by concurrent requests.

A download and a list page each need the token checked and the children read. As a
statement (two, for a list) per request, the round trips cost more than the reads: a
wake-up of PostgreSQL and of the driver per request, and on a small machine those
wake-ups were a quarter of the bridge's time. Here the requests waiting at one moment go
out as one statement (GroupCommit), which checks each request's own token, touches the
tokens used, and reads what each request may see and nothing more.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from bridge.adapters.group_commit import GroupCommit
from bridge.adapters.postgres.connection import DATABASE_UNAVAILABLE
from bridge.adapters.postgres.school_pulls import CHILD_VIEW, TOKEN_SCOPE, view_of
from bridge.adapters.postgres.tokens import (
    TOKEN_ADMITTED,
    TOKEN_COLUMNS,
    token_arrays,
    token_row_of,
    tokens_of_requests,
)
from bridge.domain.access import PresentedToken
from bridge.services.ports.files import SealedFile
from bridge.services.ports.schools import ChildFile, FileLookup, ListLookup, ListQuery

# The token's columns (TokenRow), prefixed: a child has a school_code too.
_TOKEN_SELECT = ", ".join(f"t.{c} AS t_{c}" for c in TOKEN_COLUMNS)
# The same, on a page's first row only (or its only row, when it has no child).
_FIRST_ROW_TOKEN = ", ".join(
    f"CASE WHEN coalesce(q.nth, 1) = 1 THEN t.{c} END AS t_{c}" for c in TOKEN_COLUMNS
)


# Per download ($5-$6): the number asked for, and the largest file whose bytes come along.
_FILE_LOOKUPS = f"""
{tokens_of_requests(("$5::text[]", "$6::int[]"), ("student_number", "inline_max"))}
SELECT r.i, {_TOKEN_SELECT}, c.child_id, c.student_number, c.school_code,
       f.sha256, f.size, f.media_type, f.ciphertext, f.key_id, f.wrapped_key, f.nonce_prefix,
       f.erased_at, f.erased_reason, f.damaged_at
  FROM r
  LEFT JOIN t ON t.i = r.i
  LEFT JOIN LATERAL (
      SELECT c.child_id, c.student_number, c.school_code,
             c.handoff ->> 'verified_file_sha256' AS sha256
        FROM children c
       WHERE c.child_id = (SELECT n.child_id FROM child_numbers n
                            WHERE n.student_number = r.student_number)
         AND {TOKEN_ADMITTED} AND {TOKEN_SCOPE}
  ) c ON TRUE
  LEFT JOIN LATERAL (
      SELECT f.sha256, f.size, f.media_type, f.key_id, f.wrapped_key, f.nonce_prefix,
             f.erased_at, f.erased_reason, f.damaged_at,
             CASE WHEN f.size <= r.inline_max THEN f.ciphertext END AS ciphertext
        FROM record_files f WHERE f.sha256 = c.sha256
  ) f ON TRUE
 ORDER BY r.i
"""

# Per list page ($5-$10): the school, the child id it continues after, the page size, and
# the filters. A request's page is its limit + 1 rows, to tell whether more follow; a
# request with no rows comes back as one row of its token alone.
_LIST_REQUESTS = tokens_of_requests(
    ("$5::text[]", "$6::bigint[]", "$7::int[]", "$8::int[]", "$9::timestamptz[]", "$10::text[]"),
    ("list_school", "after_child_id", "page_rows", "entry_year", "since", "state"),
)


@functools.cache
def _list_lookups(entry_year: bool, since: bool, state: bool) -> str:
    """The statement for list pages that all give (or all leave out) each filter.

    Only the filters given are in it, as in SchoolPulls.school_children: with `(r.x IS NULL
    OR ...)` terms, the entry year could not take part in the index scan, and a page was
    every child of the school, all years, computed and sorted before its limit (3.9 ms
    against 1.0 ms for three pages of 11 in schools of 100).
    """
    where = [
        "c.school_code = r.list_school", "c.child_id > r.after_child_id",
        TOKEN_ADMITTED, TOKEN_SCOPE,
    ]  # fmt: skip
    if entry_year:
        where.append("c.entry_year = r.entry_year")
    if since:
        where.append("c.school_visible_at >= r.since")
    outer = "WHERE q.state = r.state" if state else ""
    view = CHILD_VIEW.format(where=" AND ".join(where))
    return f"""
{_LIST_REQUESTS}
SELECT r.i, {_FIRST_ROW_TOKEN}, q.*
  FROM r
  LEFT JOIN t ON t.i = r.i
  LEFT JOIN LATERAL (
      SELECT q.*, row_number() OVER (ORDER BY q.child_id) AS nth FROM (
          SELECT * FROM ({view}) q {outer} ORDER BY q.child_id LIMIT r.page_rows) q
  ) q ON TRUE
 ORDER BY r.i, q.child_id
"""


# Enough for 200 schools' requests at once. The small files' bytes of a batch are in
# memory together (at most this many times the inline limit), as they were when each
# request fetched its own.
MAX_BATCH = 100
# A list page can be a thousand children, and one statement runs on one backend: pages
# go 32 to a statement, two statements at a time. 200 pages of 500 children took 2.0-2.1 s
# in statements of 100 one at a time, 1.3-1.4 s so (the old statement per page, four at a
# time: 1.1-1.3 s); with small pages and downloads in between (200 schools, closed loop),
# 32 x 2 kept the file p99 of 100 x 1 (52-56 ms), where 16 x 2 and 4 x 4 doubled it.
MAX_LISTS, LIST_STATEMENTS = 32, 2


@dataclass(frozen=True, slots=True)
class _FileRequest:
    presented: PresentedToken
    student_number: str | None
    inline_max: int


@dataclass(frozen=True, slots=True)
class _ListRequest:
    presented: PresentedToken
    query: ListQuery


def _file(row: asyncpg.Record) -> FileLookup:
    if row["child_id"] is None:
        return FileLookup(token_row_of(row, "t_"), None)
    sealed = None
    if row["wrapped_key"] is not None:
        sealed = SealedFile(
            row["key_id"], row["wrapped_key"], row["nonce_prefix"], row["ciphertext"]
        )
    child = ChildFile(
        row["child_id"], row["student_number"], row["school_code"], row["sha256"],
        row["size"], row["media_type"], sealed, row["erased_at"], row["erased_reason"],
        row["damaged_at"] is not None,
    )  # fmt: skip
    return FileLookup(token_row_of(row, "t_"), child)


class SchoolLookups:
    """Downloads' and list pages' reads, each request's token checked in the same statement.

    What arrives while a statement is out forms the next (GroupCommit, which here batches
    reads): a lone request waits for nothing but its own read, and under load the batches
    grow. Downloads go one statement at a time, which measured best: 5,000-5,100 req/s
    against 4,300-4,600 with two (200 schools, closed loop, 2 cores); lists see MAX_LISTS.
    """

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = MAX_BATCH) -> None:
        self._pool = pool
        self.statements = 0  # batches read so far (for tests and benchmarks)
        # A statement refused for one request's values is read again request by request,
        # so that the others still get their answers; the database being away is not.
        self._files: GroupCommit[_FileRequest, FileLookup] = GroupCommit(
            self._read_files, max_batch=max_batch, write_one=self._read_file,
            batch_wide=DATABASE_UNAVAILABLE, on_batch=self._count, name="file lookups",
        )  # fmt: skip
        self._lists: GroupCommit[_ListRequest, ListLookup] = GroupCommit(
            self._read_lists, max_batch=MAX_LISTS, concurrency=LIST_STATEMENTS,
            write_one=self._read_list,
            batch_wide=DATABASE_UNAVAILABLE, on_batch=self._count, name="list lookups",
        )  # fmt: skip

    def _count(self, size: int) -> None:
        self.statements += 1

    async def file_for(
        self, presented: PresentedToken, student_number: str | None, *, inline_max: int
    ) -> FileLookup:
        """The token's row, and the child's file metadata and (up to *inline_max* bytes)
        content if the token passes and its scope covers the child. The caller must still
        admit the token before going on."""
        return await self._files.submit(_FileRequest(presented, student_number, inline_max))

    async def list_for(self, presented: PresentedToken, query: ListQuery) -> ListLookup:
        """The token's row, and one page of the school's children if the token passes and
        its scope covers them. The caller must still admit the token before going on."""
        return await self._lists.submit(_ListRequest(presented, query))

    async def _read_files(self, requests: Sequence[_FileRequest]) -> list[FileLookup]:
        rows = await self._pool.fetch(
            _FILE_LOOKUPS,
            *token_arrays([r.presented for r in requests]),
            [r.student_number for r in requests],
            [r.inline_max for r in requests],
        )
        return [_file(row) for row in rows]

    async def _read_file(self, request: _FileRequest) -> FileLookup:
        return (await self._read_files([request]))[0]

    async def _read_list(self, request: _ListRequest) -> ListLookup:
        return (await self._read_lists([request]))[0]

    async def _read_lists(self, requests: Sequence[_ListRequest]) -> list[ListLookup]:
        shapes: dict[tuple[bool, bool, bool], list[int]] = {}
        for n, r in enumerate(requests):
            q = r.query
            shape = (q.entry_year is not None, q.since is not None, q.state is not None)
            shapes.setdefault(shape, []).append(n)
        pages: list[list[asyncpg.Record]] = [[] for _ in requests]
        for shape, members in shapes.items():  # nightly jobs mostly ask alike: one statement
            queries = [requests[n].query for n in members]
            rows = await self._pool.fetch(
                _list_lookups(*shape),
                *token_arrays([requests[n].presented for n in members]),
                [q.school_code for q in queries],
                [q.after_child_id for q in queries],
                [q.limit + 1 for q in queries],
                [q.entry_year for q in queries],
                [q.since for q in queries],
                [q.state for q in queries],
            )
            for row in rows:
                pages[members[row["i"] - 1]].append(row)
        return [
            ListLookup(
                token_row_of(page[0], "t_"),
                [view_of(row) for row in page if row["child_id"] is not None],
            )
            for page in pages
        ]

    async def aclose(self) -> None:
        """Wait for the reads under way."""
        await self._files.aclose()
        await self._lists.aclose()
