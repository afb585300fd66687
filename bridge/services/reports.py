"""Reports of a reconciliation run: streamed JSON for the data centre, de-identified CSV outward.

The JSON report lists every student number of every category; a cohort of 1.5 million
children makes it large, so it is produced in chunks from a database cursor.
Anything that leaves the data centre goes as CSV with masked numbers and a pseudonymous
key (HMAC of the number under a key that stays here), never a raw identity number.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from collections.abc import AsyncIterator, Iterable

import orjson

from bridge.domain.access import Principal
from bridge.domain.reconciliation import CATEGORIES, Category
from bridge.domain.student_number import mask
from bridge.errors import Forbidden
from bridge.services.acting import Acting
from bridge.services.ports.access import Audit
from bridge.services.ports.reconciliation import ALL, Findings, Item, RunInfo, Scope
from bridge.services.reconciliation import Progress, Reconciler


def run_summary(run: RunInfo) -> dict[str, object]:
    """The run's header fields."""
    return {
        "entry_year": run.entry_year,
        "run_id": run.run_id,
        "status": run.status,
        "trigger": run.trigger,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "as_of": run.as_of.isoformat(),
        "provisional": run.provisional,
        "sides": run.sides,
        "repairs": run.repairs,
    }


async def report_json(store: Findings, run: RunInfo, scope: Scope = ALL) -> AsyncIterator[bytes]:
    """The run's report as one JSON object, in chunks.

    ``{"entry_year", "run_id", "finished_at", ..., "changes": {NAME: {"new", "resolved"}},
    "categories": {NAME: {"count", "student_numbers"}}}`` with every category present.
    """
    head = run_summary(run)
    head["previous_run_id"] = await store.previous(run)
    head["scope"] = {"county_code": scope.county_code, "kindergarten_code": scope.kindergarten_code}
    head["labels"] = {c.value: {"zh": i.zh, "en": i.en} for c, i in CATEGORIES.items()}
    changes = await store.changes(run, scope)
    head["changes"] = {
        c.value: {
            "new": changes.get(c.value, {}).get("new", []),
            "resolved": changes.get(c.value, {}).get("resolved", []),
        }
        for c in Category
        if c is not Category.MATCHED
    }
    counts = await store.counts(run, scope)
    yield orjson.dumps(head)[:-1] + b',"categories":{'
    for i, category in enumerate(Category):
        prefix = b"," if i else b""
        yield (
            prefix
            + orjson.dumps(category.value)
            + b':{"count":%d,"student_numbers":[' % (counts.get(category.value, 0))
        )
        first = True
        async for batch in store.numbers(run, category.value, scope):
            chunk = orjson.dumps(batch)[1:-1]
            yield (b"" if first else b",") + chunk
            first = False
        yield b"]}"
    yield b"}}"


def pseudonym(key: bytes, student_number: str) -> str:
    """A stable key for a child that reveals nothing of its number."""
    return hmac.new(key, student_number.encode(), hashlib.sha256).hexdigest()[:16]


CSV_COLUMNS = (
    "category", "category_zh", "child_key", "student_number_masked", "county_code",
    "kindergarten_code", "school_code", "since", "new", "detail",
)  # fmt: skip
_NUMBER_DETAIL = {"other_numbers", "existing_student_number"}


def _detail_out(detail: dict[str, str]) -> str:
    parts = []
    for k, v in sorted(detail.items()):
        if k in _NUMBER_DETAIL:
            v = " ".join(mask(x) for x in v.split())
        parts.append(f"{k}={v}")
    return "; ".join(parts)


# A cell a spreadsheet would take for a formula (CSV injection): shown as text instead.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"  # Excel on Chinese Windows reads UTF-8 (类别, names) only after one


def csv_safe(value: object) -> str:
    """A CSV cell that a spreadsheet shows as the text it is, never runs."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def items_csv(items: Iterable[Item], key: bytes, *, header: bool = True) -> str:
    """De-identified CSV rows of *items*."""
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(CSV_COLUMNS)
    for item in items:
        info = next((i for c, i in CATEGORIES.items() if c.value == item.category), None)
        writer.writerow([csv_safe(v) for v in (
            item.category, info.zh if info else "", pseudonym(key, item.student_number),
            mask(item.student_number), item.county_code or "", item.kindergarten_code or "",
            item.school_code or "", item.since.isoformat() if item.since else "",
            "yes" if item.new else "", _detail_out(item.detail),
        )])  # fmt: skip
    return out.getvalue()


async def export_csv(
    store: Findings,
    run: RunInfo,
    *,
    categories: list[str] | None,
    scope: Scope,
    new_only: bool = False,
    page: int = 5000,
    bom: bool = False,
) -> AsyncIterator[str]:
    """A de-identified CSV of findings, page by page (*bom*: first a UTF-8 BOM, for a file
    that Excel on Chinese Windows opens)."""
    key = await store.pseudonym_key()
    offset = 0
    if bom:
        yield BOM
    while True:
        items = await store.items(
            run, categories=categories, scope=scope, new_only=new_only, limit=page, offset=offset
        )
        yield items_csv(items, key, header=offset == 0)
        if len(items) < page:
            return
        offset += page


def scope_for(principal: Principal, county: str | None, kindergarten: str | None) -> Scope:
    """The principal's scope, narrowed by an operator's county and kindergarten filters."""
    if principal.is_county:
        if county and county != principal.county_code:
            raise Forbidden("a county operator sees only their own county")
        county = principal.county_code
    return Scope(county or None, kindergarten or None)


class Reporting:
    """Operators' reconciliation work: running one, reading and exporting runs, audited."""

    def __init__(self, findings: Findings, audit: Audit, reconciler: Reconciler) -> None:
        self.findings = findings
        self._audit = audit
        self._reconciler = reconciler

    async def reconcile(
        self, entry_year: int, *, trigger: str, who: Acting, progress: Progress | None = None
    ) -> RunInfo:
        """Run one now (ReconciliationBusy if one is under way)."""
        run = await self._reconciler.run(
            entry_year, trigger=trigger, actor=who.actor, progress=progress
        )
        await self._audit.record(
            action="reconcile.run", outcome="finished", principal=who.principal,
            actor=who.actor, remote=who.remote,
            detail={"run_id": run.run_id, "entry_year": entry_year},
        )  # fmt: skip
        return run

    async def runs(self, entry_year: int | None = None) -> list[RunInfo]:
        """Stored runs, newest first."""
        return await self.findings.runs(entry_year)

    async def finished(self, run_id: int | None, entry_year: int | None) -> RunInfo | None:
        """Run *run_id* if it finished; without an id, the cohort's latest finished run."""
        if run_id is None:
            return await self.findings.latest(entry_year) if entry_year is not None else None
        run = await self.findings.get(run_id)
        return run if run is not None and run.status == "finished" else None

    async def opened(self, run_id: int, who: Acting) -> None:
        """An operator opens a run's report (audited before it is looked up)."""
        await self._audit.record(
            action="reconcile.report", outcome="ok", principal=who.principal, actor=who.actor,
            remote=who.remote, detail={"run_id": run_id},
        )  # fmt: skip

    async def exported(self, run: RunInfo, who: Acting, **detail: str) -> None:
        """An operator takes findings out of the report (JSON items or CSV)."""
        await self._audit.record(
            action="reconcile.export", outcome="ok", principal=who.principal, actor=who.actor,
            remote=who.remote, detail={"run_id": run.run_id, **detail},
        )  # fmt: skip

    def report_json(self, run: RunInfo, scope: Scope = ALL) -> AsyncIterator[bytes]:
        """The run's report as one JSON object, in chunks."""
        return report_json(self.findings, run, scope)

    def export_csv(
        self, run: RunInfo, *, categories: list[str] | None, scope: Scope, new_only: bool = False,
        bom: bool = False,
    ) -> AsyncIterator[str]:  # fmt: skip
        """A de-identified CSV of findings, page by page (*bom*: a UTF-8 BOM first)."""
        return export_csv(
            self.findings, run, categories=categories, scope=scope, new_only=new_only, bom=bom
        )
