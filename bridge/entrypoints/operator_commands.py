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

from bridge.bootstrap import operator_tools
from bridge.domain.reconciliation import CATEGORIES, Category
from bridge.domain.student_number import mask
from bridge.services.acting import Acting
from bridge.services.ports.reconciliation import RunInfo, Scope
from bridge.services.reconciliation import ReconciliationBusy
from bridge.services.recovery import masked, masked_body
from bridge.services.use_cases import UseCases
from bridge.settings import Settings

out = Console()
err = Console(stderr=True)


def actor() -> str:
    """Who acts from the command line, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "cli:unknown"


def _run(work: Callable[[UseCases, Acting], Awaitable[int]]) -> int:
    async def main() -> int:
        async with operator_tools(Settings()) as tools:
            return await work(tools.use_cases, Acting(actor()))

    return asyncio.run(main())


def _scope(args: argparse.Namespace) -> Scope:
    return Scope(getattr(args, "county", None), getattr(args, "kindergarten", None))


async def _write_json(ops: UseCases, run: RunInfo, scope: Scope) -> None:
    async for chunk in ops.reporting.report_json(run, scope):
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


async def _print_table(ops: UseCases, run: RunInfo, scope: Scope) -> None:
    counts = await ops.reporting.findings.counts(run, scope)
    changes = await ops.reporting.findings.changes(run, scope)
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

    async def work(ops: UseCases, who: Acting) -> int:
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,}"),
            TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal,
        ) as progress:  # fmt: skip
            tasks = {s: progress.add_task(s, total=None) for s in ("roster", "ledger", "registry")}

            def seen(side: str, n: int) -> None:
                progress.update(tasks[side], completed=n)

            try:
                run = await ops.reporting.reconcile(
                    args.entry_year, trigger="cli", who=who, progress=seen
                )
            except ReconciliationBusy as exc:
                err.print(f"[red]{exc}[/]")
                return 3
        if args.json:
            await _write_json(ops, run, _scope(args))
        else:
            await _print_table(ops, run, _scope(args))
        return 0

    return _run(work)


def cmd_report(args: argparse.Namespace) -> int:
    """xueji report runs|show ..."""

    async def work(ops: UseCases, who: Acting) -> int:
        if args.report == "runs":
            table = Table(title="Reconciliation runs")
            for column in ("run", "year", "trigger", "status", "finished", "as of", "worklist"):
                table.add_column(column)
            for each in await ops.reporting.runs(args.entry_year):
                open_work = sum(each.counts.get(c.value, 0) for c in Category if c.value not in (
                    "matched", "in_flight", "not_in_roster"))  # fmt: skip
                table.add_row(
                    str(each.run_id), str(each.entry_year), each.trigger, each.status,
                    str(each.finished_at or "")[:19], str(each.as_of), str(open_work),
                )  # fmt: skip
            out.print(table)
            return 0
        run = await ops.reporting.finished(args.run_id, args.entry_year)
        if run is None:
            err.print("[red]no finished run[/]")
            return 2
        scope = _scope(args)
        if args.csv:
            categories = [args.category] if args.category else None
            await ops.reporting.exported(run, who, format="csv", category=args.category or "")
            chunks = [
                text
                async for text in ops.reporting.export_csv(
                    run, categories=categories, scope=scope, new_only=args.new
                )
            ]
            _write_text(args.csv, chunks)
            return 0
        await ops.reporting.opened(run.run_id, who)
        if args.json:
            await _write_json(ops, run, scope)
            return 0
        await _print_table(ops, run, scope)
        if args.category:
            table = Table(title=args.category)
            for column in ("student number", "county", "kindergarten", "since", "new", "detail"):
                table.add_column(column)
            for item in await ops.reporting.findings.items(
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

    async def work(ops: UseCases, who: Acting) -> int:
        recovery = ops.recovery
        if args.parked == "groups":
            table = Table(title="Set-aside work by reason")
            for column in ("kind", "reason", "registry answer", "count", "first seen", "last seen"):
                table.add_column(column)
            for g in [*await recovery.parked_groups(), *await recovery.set_aside_groups(who)]:
                table.add_row(
                    g.kind, g.reason, g.answer, str(g.count), str(g.first_seen or "")[:19],
                    str(g.last_seen or "")[:19],
                )  # fmt: skip
            out.print(table)
        elif args.parked == "list":
            for item in await recovery.parked_messages(args.reason):
                out.print(f"{item.id}\t{item.reason_code}\t{item.routing_key}\t{item.parked_at}")
        elif args.parked == "show":
            m = await recovery.read_parked(args.id, who)
            if m is None:
                err.print("[red]no such parked message[/]")
                return 2
            out.print(f"#{m.id} {m.reason_code}: {m.reason} (outcome: {m.outcome or '-'})")
            out.print(masked_body(m.body), markup=False)
        elif args.parked == "retry":
            result = await recovery.retry_parked_messages(
                who, message_id=args.id, reason=args.reason, group_key=args.reason
            )
            out.print(f"republished {len(result.retried)}, skipped {len(result.skipped)}")
        elif args.parked == "resolve":
            if await recovery.resolve_parked_message(who, args.id, args.note) is None:
                return 2
        elif args.parked == "handoffs":
            table = Table(title="Set-aside hand-overs")
            for column in ("student number", "reason", "answer", "county", "since", "detail"):
                table.add_column(column)
            for c in await recovery.set_aside_cases(who, reason=args.reason):
                table.add_row(
                    mask(c.student_number), c.reason, c.answer, c.county_code or "",
                    str(c.set_aside_at or "")[:19],
                    json.dumps(masked(c.detail), ensure_ascii=False),
                )  # fmt: skip
            out.print(table)
        elif args.parked == "retry-handoffs":
            result = await recovery.retry_set_aside(
                who, reason=args.reason, answer=args.answer, student_number=args.student_number,
                group_key=args.reason,
            )  # fmt: skip
            out.print(f"released {len(result.retried)}, busy {len(result.skipped)}")
        elif (
            args.parked == "resolve-handoff"
            and await recovery.resolve_set_aside(who, args.student_number, args.note) is None
        ):
            err.print("[red]no open set-aside for this child[/]")
            return 2
        return 0

    return _run(work)


def cmd_calendar(args: argparse.Namespace) -> int:
    """xueji calendar load FILE | show YEAR."""

    async def work(ops: UseCases, who: Acting) -> int:
        if args.calendar == "load":
            data: Any = json.loads(_read_text(args.file))
            try:
                schedule = await ops.calendar.load(data, who, source=Path(args.file).name)
            except (KeyError, ValueError) as exc:
                err.print(f"[red]refused: {exc}[/]")
                return 2
            out.print(f"loaded the official schedule of {schedule.year}")
            return 0
        official = await ops.calendar.official(args.year)
        state = "official" if official else "weekends only (provisional)"
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
