"""The console as a stranger's browser would try it: every page and form with parameters it
does not expect, in forms it does not expect. Schemathesis fuzzes what /v1/openapi.json
describes; the console is HTML, so its inputs are drawn here. Every answer is a page (or the
CSV asked for), never a 500.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import pytest

from tests.api.test_console_casework import signed_in
from tests.support.school_api import SchoolApiEnv

pytestmark = pytest.mark.live

PAGES = [
    "/console/", "/console/report", "/console/lost", "/console/worklist", "/console/parked",
    "/console/export.csv", "/console/lost.csv", "/console/child/{value}", "/console/{value}",
]  # fmt: skip
FORMS = ["/console/set-aside", "/console/parked", "/console/reconcile", "/console/login"]
KEYS = [
    "entry_year", "county", "kindergarten", "school", "category", "page", "new", "run",
    "reason", "answer", "flash", "n", "skipped", "group", "purpose", "id", "action", "note",
    "student_number", "back", "by", "identified", "token", "x",
]  # fmt: skip
VALUES = [
    "", "0", "-1", "1" * 25, "abc", "2026", "1999", "110105", "2111010501", "\n", "a\x00b",
    "%0A", "G11010520190307001X", "G11010520190307001X\n", "true", "[]", "{}", "９", "٥",
    "x" * 6000, "<script>alert(1)</script>", "=1+1", "retry", "resolve", "case", "worklist",
    "not_arrived", "bad_source_file", "1e9", " 5", "0x10", "NaN", "☃",
]  # fmt: skip


def not_a_year(value: str) -> bool:
    # A stranger's reconciliation of a real cohort would only slow the other tests down.
    return not (value.isdigit() and 2000 <= int(value) <= 2100)


def drawn(rng: random.Random, *, for_reconcile: bool = False) -> list[tuple[str, str]]:
    fields = []
    for _ in range(rng.randint(0, 6)):
        value = rng.choice(VALUES)
        if for_reconcile and not not_a_year(value):
            value = "abc"
        fields.append((rng.choice(KEYS), value))
    return fields


@pytest.fixture
async def browsers(api_env: SchoolApiEnv) -> AsyncIterator[list[tuple[aiohttp.ClientSession, str]]]:
    county, province = await signed_in(api_env, "county"), await signed_in(api_env, "province")
    async with county[0], province[0]:
        yield [county, province]


async def test_every_console_page_and_form_answers_strange_input_without_a_500(
    api_env: SchoolApiEnv, browsers: list[tuple[aiohttp.ClientSession, str]]
) -> None:
    rng = random.Random(20261206)
    failures = []
    seen: dict[tuple[int, str], int] = {}
    for i in range(360):
        browser, csrf = browsers[i % 2]
        if i % 3:
            page = rng.choice(PAGES).format(value=quote(rng.choice(VALUES), safe=""))
            query = "&".join(f"{k}={quote(v, safe='')}" for k, v in drawn(rng))
            async with browser.get(f"{api_env.url}{page}?{query}", allow_redirects=False) as r:
                status, kind, body = r.status, r.content_type, await r.read()
            expected = "text/csv" if page.endswith(".csv") and status == 200 else "text/html"
            what = f"GET {page}?{query}"
        else:
            form = rng.choice(FORMS)
            fields = drawn(rng, for_reconcile=form == "/console/reconcile")
            if rng.random() < 0.8:
                fields.append(("csrf", csrf))
            async with browser.post(
                f"{api_env.url}{form}", data=fields, allow_redirects=False
            ) as r:
                status, kind, body = r.status, r.content_type, await r.read()
            expected = "text/html"
            what = f"POST {form} {fields}"
        seen[(status, kind)] = seen.get((status, kind), 0) + 1
        if len(what) > 8000 and kind == "application/problem+json" and status in (400, 414):
            expected = kind  # a request line HTTP itself refuses, before any page is chosen
        if status >= 500 or (status != 303 and kind != expected) or b"Traceback" in body:
            failures.append((what[:300], status, kind))
    assert failures == []
    # Signed in throughout: pages were shown, and strange values refused as pages.
    assert seen.get((200, "text/html"), 0) > 20 and seen.get((400, "text/html"), 0) > 20
