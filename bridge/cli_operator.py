"""Operators' commands: ``xueji reconcile``, ``report``, ``parked`` and ``calendar``.

Output for scripts is JSON (``--json``) or de-identified CSV (``--csv``); for people it is
rich tables, with progress on stderr so that stdout stays clean.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from bridge.adapters.postgres.reconciliation_store import RunInfo, Scope
from bridge.domain.reconciliation import CATEGORIES, Category
from bridge.domain.student_number import mask
from bridge.domain.working_days import YearSchedule
from bridge.operations import Operations, standalone_operations
from bridge.services.reconciliation import ReconciliationBusy
from bridge.services.recovery import masked, masked_body
from bridge.services.reports import export_csv, report_json
from bridge.settings import Settings

out = Console()
err = Console(stderr=True)


def actor() -> str:
    """Who acts from the command line, for the audit log."""
    return f"cli:{getpass.getuser()}"


def _run(work: Callable[[Operations], Awaitable[int]]) -> int:
    async def main() -> int:
        async with standalone_operations(Settings()) as ops:
            return await work(ops)

    return asyncio.run(main())


def _scope(args: argparse.Namespace) -> Scope:
    return Scope(getattr(args, "county", None), getattr(args, "kindergarten", None))


async def _write_json(ops: Operations, run: RunInfo, scope: Scope) -> None:
    async for chunk in report_json(ops.runs, run, scope):
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


async def _print_table(ops: Operations, run: RunInfo, scope: Scope) -> None:
    counts = await ops.runs.counts(run, scope)
    changes = await ops.runs.changes(run, scope)
    table = Table(title=f"Reconciliation #{run.run_id} of {run.entry_year} (as of {run.as_of})")
    for column in ("category", "类别", "label", "children", "new", "resolved"):
        table.add_column(
            column, justify="right" if column in ("children", "new", "resolved") else "left"
        )
    for category, info in CATEGORIES.items():
        ch = changes.get(category.value, {})
        table.add_row(
            category.value, info.zh, info.en, str(counts.get(category.value, 0)),
            str(len(ch.get("new", []))) if ch else "",
            str(len(ch.get("resolved", []))) if ch else "",
        )  # fmt: skip
    out.print(table)
    out.print(
        f"sides: {run.sides} · repairs: {run.repairs}"
        + (" · [yellow]provisional deadlines (no official schedule)[/]" if run.provisional else "")
    )


def _write_text(target: str, chunks: list[str]) -> None:
    if target == "-":
        sys.stdout.writelines(chunks)
        return
    with Path(target).open("w", encoding="utf-8") as f:
        f.writelines(chunks)


def _read_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def cmd_reconcile(args: argparse.Namespace) -> int:
    """xueji reconcile --entry-year 2026 [--json]."""

    async def work(ops: Operations) -> int:
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,}"),
            TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal,
        ) as progress:  # fmt: skip
            tasks = {s: progress.add_task(s, total=None) for s in ("roster", "ledger", "registry")}

            def seen(side: str, n: int) -> None:
                progress.update(tasks[side], completed=n)

            try:
                run = await ops.reconciler.run(
                    args.entry_year, trigger="cli", actor=actor(), progress=seen
                )
            except ReconciliationBusy as exc:
                err.print(f"[red]{exc}[/]")
                return 3
        await ops.audit.record(
            action="reconcile.run", outcome="finished", actor=actor(),
            detail={"run_id": run.run_id, "entry_year": args.entry_year},
        )  # fmt: skip
        if args.json:
            await _write_json(ops, run, _scope(args))
        else:
            await _print_table(ops, run, _scope(args))
        return 0

    return _run(work)


def cmd_report(args: argparse.Namespace) -> int:
    """xueji report runs|show ..."""

    async def work(ops: Operations) -> int:
        if args.report == "runs":
            table = Table(title="Reconciliation runs")
            for column in ("run", "year", "trigger", "status", "finished", "as of", "worklist"):
                table.add_column(column)
            for run in await ops.runs.runs(args.entry_year):
                open_work = sum(run.counts.get(c.value, 0) for c in Category if c.value not in (
                    "matched", "in_flight", "not_in_roster"))  # fmt: skip
                table.add_row(
                    str(run.run_id), str(run.entry_year), run.trigger, run.status,
                    str(run.finished_at or "")[:19], str(run.as_of), str(open_work),
                )  # fmt: skip
            out.print(table)
            return 0
        found = await (
            ops.runs.get(args.run_id) if args.run_id else ops.runs.latest(args.entry_year)
        )
        if found is None or found.status != "finished":
            err.print("[red]no finished run[/]")
            return 2
        run = found
        scope = _scope(args)
        if args.csv:
            categories = [args.category] if args.category else None
            chunks = [
                text
                async for text in export_csv(
                    ops.runs, ops.pool, run, categories=categories, scope=scope, new_only=args.new
                )
            ]
            _write_text(args.csv, chunks)
            return 0
        if args.json:
            await _write_json(ops, run, scope)
            return 0
        await _print_table(ops, run, scope)
        if args.category:
            table = Table(title=args.category)
            for column in ("student number", "county", "kindergarten", "since", "new", "detail"):
                table.add_column(column)
            for item in await ops.runs.items(
                run, categories=[args.category], scope=scope, new_only=args.new, limit=args.limit
            ):
                table.add_row(
                    mask(item.student_number), item.county_code or "", item.kindergarten_code or "",
                    str(item.since or "")[:19], "new" if item.new else "",
                    json.dumps(masked(item.detail), ensure_ascii=False),
                )  # fmt: skip
            out.print(table)
        return 0

    return _run(work)


def cmd_parked(args: argparse.Namespace) -> int:
    """xueji parked groups|show|retry|resolve|handoffs|retry-handoffs|resolve-handoff."""

    async def work(ops: Operations) -> int:
        store, who = ops.recovery_store, actor()
        if args.parked == "groups":
            table = Table(title="Set-aside work by reason")
            for column in ("kind", "reason", "registry answer", "count", "first seen", "last seen"):
                table.add_column(column)
            for g in [*await store.parked_groups(), *await store.set_aside_groups(None)]:
                table.add_row(
                    g.kind, g.reason, g.answer, str(g.count), str(g.first_seen or "")[:19],
                    str(g.last_seen or "")[:19],
                )  # fmt: skip
            out.print(table)
        elif args.parked == "list":
            for item in await store.parked_messages(reason_code=args.reason):
                out.print(f"{item.id}\t{item.reason_code}\t{item.routing_key}\t{item.parked_at}")
        elif args.parked == "show":
            m = await store.parked_message(args.id)
            if m is None:
                err.print("[red]no such parked message[/]")
                return 2
            await ops.audit.record(
                action="parked.read", outcome="ok", actor=who, detail={"parked_id": m.id}
            )
            out.print(f"#{m.id} {m.reason_code}: {m.reason} (outcome: {m.outcome or '-'})")
            out.print(masked_body(m.body), markup=False)
        elif args.parked == "retry":
            if args.id is not None:
                one = await store.parked_message(args.id)
                messages = [one] if one is not None and one.resolved_at is None else []
            else:
                messages = await store.parked_messages(reason_code=args.reason)
            result = await ops.recovery.retry_parked(messages, None, who, group_key=args.reason)
            out.print(f"republished {len(result.retried)}, skipped {len(result.skipped)}")
        elif args.parked == "resolve":
            m = await store.parked_message(args.id)
            if m is None:
                return 2
            await ops.recovery.resolve_parked(m, args.note, None, who)
        elif args.parked == "handoffs":
            table = Table(title="Set-aside hand-overs")
            for column in ("student number", "reason", "answer", "county", "since", "detail"):
                table.add_column(column)
            for c in await store.set_aside_cases(None, reason=args.reason):
                table.add_row(
                    mask(c.student_number), c.reason, c.answer, c.county_code or "",
                    str(c.set_aside_at or "")[:19],
                    json.dumps(masked(c.detail), ensure_ascii=False),
                )  # fmt: skip
            out.print(table)
        elif args.parked == "retry-handoffs":
            cases = await store.set_aside_cases(
                None, reason=args.reason, answer=args.answer, student_number=args.student_number
            )
            result = await ops.recovery.retry_handoffs(cases, None, who, group_key=args.reason)
            out.print(f"released {len(result.retried)}, busy {len(result.skipped)}")
        elif args.parked == "resolve-handoff":
            cases = await store.set_aside_cases(None, student_number=args.student_number)
            if not cases:
                err.print("[red]no open set-aside for this child[/]")
                return 2
            await ops.recovery.resolve_handoff(cases[0], args.note, None, who)
        return 0

    return _run(work)


def cmd_calendar(args: argparse.Namespace) -> int:
    """xueji calendar load FILE | show YEAR."""

    async def work(ops: Operations) -> int:
        if args.calendar == "load":
            data: Any = json.loads(_read_text(args.file))
            try:
                schedule = YearSchedule.from_mapping(data)
            except (KeyError, ValueError) as exc:
                err.print(f"[red]refused: {exc}[/]")
                return 2
            await ops.calendars.load(schedule, actor=actor(), source=Path(args.file).name)
            await ops.audit.record(
                action="calendar.load", outcome="ok", actor=actor(), detail={"year": schedule.year}
            )
            out.print(f"loaded the official schedule of {schedule.year}")
            return 0
        cal = await ops.calendars.calendar()
        state = "official" if cal.official(args.year) else "weekends only (provisional)"
        out.print(f"{args.year}: {state}")
        return 0

    return _run(work)


def register_operator_commands(sub: Any) -> None:
    """Add the operators' sub-commands to the ``xueji`` parser."""
    rec = sub.add_parser("reconcile", help="three-way reconciliation of one cohort, now")
    rec.add_argument("--entry-year", type=int, required=True)
    rec.add_argument("--json", action="store_true", help="print the report as one JSON object")
    rec.add_argument("--county")
    rec.add_argument("--kindergarten")
    rec.set_defaults(func=cmd_reconcile)

    rep = sub.add_parser("report", help="stored reconciliation reports")
    rsub = rep.add_subparsers(dest="report", required=True)
    runs = rsub.add_parser("runs", help="list runs")
    runs.add_argument("--entry-year", type=int)
    show = rsub.add_parser("show", help="one run's report (latest of the cohort by default)")
    show.add_argument("--entry-year", type=int)
    show.add_argument("--run-id", type=int)
    show.add_argument("--category", choices=[c.value for c in Category])
    show.add_argument("--county")
    show.add_argument("--kindergarten")
    show.add_argument("--new", action="store_true", help="only what is new since the last run")
    show.add_argument("--limit", type=int, default=100)
    show.add_argument("--json", action="store_true")
    show.add_argument("--csv", metavar="FILE", help="de-identified CSV to FILE ('-': stdout)")
    rep.set_defaults(func=cmd_report)

    park = sub.add_parser("parked", help="parked messages and set-aside hand-overs")
    psub = park.add_subparsers(dest="parked", required=True)
    psub.add_parser("groups", help="everything set aside, by reason")
    lst = psub.add_parser("list", help="parked messages")
    lst.add_argument("--reason")
    one = psub.add_parser("show", help="one parked message, identity fields masked")
    one.add_argument("id", type=int)
    retry = psub.add_parser("retry", help="republish one parked message or a whole group")
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("--id", type=int)
    target.add_argument("--reason")
    resolve = psub.add_parser("resolve", help="close a parked message with a note")
    resolve.add_argument("id", type=int)
    resolve.add_argument("--note", required=True)
    hand = psub.add_parser("handoffs", help="set-aside hand-overs")
    hand.add_argument("--reason")
    rh = psub.add_parser("retry-handoffs", help="retry one set-aside hand-over or a group")
    which = rh.add_mutually_exclusive_group(required=True)
    which.add_argument("--reason")
    which.add_argument("--student-number")
    rh.add_argument("--answer", help="only this registry answer within the reason")
    res = psub.add_parser("resolve-handoff", help="close a set-aside hand-over with a note")
    res.add_argument("student_number")
    res.add_argument("--note", required=True)
    park.set_defaults(func=cmd_parked)

    cal = sub.add_parser("calendar", help="official working-day schedules")
    csub = cal.add_subparsers(dest="calendar", required=True)
    load = csub.add_parser("load", help="load a year's schedule from a JSON file")
    load.add_argument("file")
    see = csub.add_parser("show", help="whether a year has an official schedule")
    see.add_argument("year", type=int)
    cal.set_defaults(func=cmd_calendar)
