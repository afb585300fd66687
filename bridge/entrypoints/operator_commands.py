"""Operators' commands: ``xueji reconcile``, ``report``, ``parked`` and ``calendar``.

Output for scripts is JSON (``--json``) or de-identified CSV (``--csv``); for people it is
tables that fit the terminal (tables.py), with progress on stderr (at a terminal, or with
``--progress``) so that stdout stays clean. A failure ends in one sentence (guard.py).
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

from bridge.bootstrap import operator_tools
from bridge.domain.reconciliation import CATEGORIES, Category
from bridge.domain.student_number import mask
from bridge.entrypoints.guard import CommandFailed
from bridge.entrypoints.progress import Ticker, wanted
from bridge.entrypoints.tables import print_table
from bridge.services.acting import Acting
from bridge.services.ports.reconciliation import RunInfo, Scope
from bridge.services.ports.recovery import Group, ParkedMessage, SetAsideCase
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


def print_json(body: Any) -> None:
    """*body* as one JSON document on stdout (for scripts)."""
    print(json.dumps(body, ensure_ascii=False, default=str))


def _when(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


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
    rows = []
    for category, info in CATEGORIES.items():
        ch = changes.get(category.value, {})
        rows.append((
            category.value, info.zh, info.en, str(counts.get(category.value, 0)),
            str(len(ch.get("new", []))) if ch else "",
            str(len(ch.get("resolved", []))) if ch else "",
        ))  # fmt: skip
    print_table(
        out, f"Reconciliation #{run.run_id} of {run.entry_year} (as of {run.as_of})",
        ("category", "类别", "label", "children", "new", "resolved"), rows,
        right=("children", "new", "resolved"),
    )  # fmt: skip
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
        # Another run of the cohort under way: ReconciliationBusy, exit 3 (guard.py).
        if err.is_terminal:
            with Progress(
                SpinnerColumn(), TextColumn("{task.description}"),
                TextColumn("{task.completed:,}"), TimeElapsedColumn(), console=err,
                transient=True,
            ) as progress:  # fmt: skip
                sides = ("roster", "ledger", "registry")
                tasks = {side: progress.add_task(side, total=None) for side in sides}

                def seen(side: str, n: int) -> None:
                    progress.update(tasks[side], completed=n)

                run = await ops.reporting.reconcile(
                    args.entry_year, trigger="cli", who=who, progress=seen
                )
        else:
            ticker, counts = Ticker(err, shown=wanted(args, err)), dict[str, int]()

            def tick(side: str, n: int) -> None:
                counts[side] = n
                ticker("read " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))

            run = await ops.reporting.reconcile(
                args.entry_year, trigger="cli", who=who, progress=tick
            )
            ticker.done("read " + ", ".join(f"{k} {v:,}" for k, v in run.sides.items()))
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
            runs = await ops.reporting.runs(args.entry_year)
            if args.json:
                print_json([_run_json(each) for each in runs])
                return 0
            rows = []
            for each in runs:
                open_work = sum(each.counts.get(c.value, 0) for c in Category if c.value not in (
                    "matched", "in_flight", "not_in_roster"))  # fmt: skip
                rows.append((
                    str(each.run_id), str(each.entry_year), each.trigger, each.status,
                    str(each.finished_at or "")[:19], str(each.as_of), str(open_work),
                ))  # fmt: skip
            print_table(
                out, "Reconciliation runs",
                ("run", "year", "trigger", "status", "finished", "as of", "worklist"), rows,
                right=("run", "worklist"),
            )  # fmt: skip
            return 0
        run = await ops.reporting.finished(args.run_id, args.entry_year)
        if run is None:
            which = f"#{args.run_id}" if args.run_id else f"of {args.entry_year or 'any cohort'}"
            raise CommandFailed(
                f"no finished reconciliation run {which}: `xueji report runs` lists them,"
                " `xueji reconcile --entry-year YEAR` makes one"
            )
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
            listed = [
                (
                    mask(item.student_number), item.county_code or "", item.kindergarten_code or "",
                    str(item.since or "")[:19], "new" if item.new else "",
                    json.dumps(masked(item.detail), ensure_ascii=False),
                )
                for item in await ops.reporting.findings.items(
                    run, categories=[args.category], scope=scope, new_only=args.new,
                    limit=args.limit,
                )
            ]  # fmt: skip
            print_table(
                out, args.category,
                ("student number", "county", "kindergarten", "since", "new", "detail"), listed,
            )  # fmt: skip
        return 0

    return _run(work)


def _group_json(g: Group) -> dict[str, Any]:
    return {
        "kind": g.kind, "reason": g.reason, "answer": g.answer, "count": g.count,
        "first_seen": _when(g.first_seen), "last_seen": _when(g.last_seen),
    }  # fmt: skip


def _parked_json(m: ParkedMessage, *, body: bool = False) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": m.id, "message_id": m.message_id, "routing_key": m.routing_key,
        "reason_code": m.reason_code, "reason": m.reason, "parked_at": _when(m.parked_at),
        "retries": m.retries, "resolved_at": _when(m.resolved_at), "outcome": m.outcome,
    }  # fmt: skip
    if body:
        shown["body"] = masked_body(m.body)  # identity fields masked, as on screen
    return shown


def _case_json(c: SetAsideCase) -> dict[str, Any]:
    return {
        "student_number": mask(c.student_number), "reason": c.reason, "answer": c.answer,
        "county_code": c.county_code, "kindergarten_code": c.kindergarten_code,
        "phase": c.phase, "set_aside_at": _when(c.set_aside_at), "detail": masked(c.detail),
    }  # fmt: skip


def _run_json(run: RunInfo) -> dict[str, Any]:
    return {
        "run_id": run.run_id, "entry_year": run.entry_year, "trigger": run.trigger,
        "status": run.status, "started_at": _when(run.started_at),
        "finished_at": _when(run.finished_at), "as_of": _when(run.as_of),
        "provisional": run.provisional, "sides": run.sides, "counts": run.counts,
        "repairs": run.repairs,
    }  # fmt: skip


def cmd_parked(args: argparse.Namespace) -> int:
    """xueji parked groups|list|show|retry|resolve|handoffs|retry-handoffs|resolve-handoff."""

    async def work(ops: UseCases, who: Acting) -> int:
        recovery = ops.recovery
        if args.parked == "groups":
            groups = [*await recovery.parked_groups(), *await recovery.set_aside_groups(who)]
            if args.json:
                print_json([_group_json(g) for g in groups])
                return 0
            rows = [
                (g.kind, g.reason, g.answer, str(g.count), str(g.first_seen or "")[:19],
                 str(g.last_seen or "")[:19])
                for g in groups
            ]  # fmt: skip
            print_table(
                out, "Set-aside work by reason",
                ("kind", "reason", "registry answer", "count", "first seen", "last seen"), rows,
                right=("count",),
            )  # fmt: skip
        elif args.parked == "list":
            items = await recovery.parked_messages(args.reason)
            if args.json:
                print_json([_parked_json(m) for m in items])
                return 0
            for item in items:
                out.print(
                    f"{item.id}\t{item.reason_code}\t{item.routing_key}\t{item.parked_at}",
                    markup=False, highlight=False, soft_wrap=True,
                )  # fmt: skip
        elif args.parked == "show":
            m = await recovery.read_parked(args.id, who)
            if m is None:
                raise CommandFailed(f"no parked message #{args.id}: `xueji parked list` lists them")
            if args.json:
                print_json(_parked_json(m, body=True))
                return 0
            out.print(f"#{m.id} {m.reason_code}: {m.reason} (outcome: {m.outcome or '-'})",
                      markup=False, highlight=False)  # fmt: skip
            out.print(masked_body(m.body), markup=False)
        elif args.parked == "retry":
            result = await recovery.retry_parked_messages(
                who, message_id=args.id, reason=args.reason, group_key=args.reason
            )
            if args.json:
                print_json({"republished": result.retried, "skipped": result.skipped})
            else:
                out.print(f"republished {len(result.retried)}, skipped {len(result.skipped)}")
        elif args.parked == "resolve":
            done = await recovery.resolve_parked_message(who, args.id, args.note)
            if done is None:
                raise CommandFailed(f"no parked message #{args.id}: `xueji parked list` lists them")
            if args.json:
                print_json({"id": args.id, "resolved": done})
            else:
                out.print(f"#{args.id} resolved" if done else f"#{args.id} was resolved already")
        elif args.parked == "handoffs":
            cases = await recovery.set_aside_cases(who, reason=args.reason)
            if args.json:
                print_json([_case_json(c) for c in cases])
                return 0
            rows = [
                (mask(c.student_number), c.reason, c.answer, c.county_code or "",
                 str(c.set_aside_at or "")[:19], json.dumps(masked(c.detail), ensure_ascii=False))
                for c in cases
            ]  # fmt: skip
            print_table(
                out, "Set-aside hand-overs",
                ("student number", "reason", "answer", "county", "since", "detail"), rows,
            )  # fmt: skip
        elif args.parked == "retry-handoffs":
            result = await recovery.retry_set_aside(
                who, reason=args.reason, answer=args.answer, student_number=args.student_number,
                group_key=args.reason,
            )  # fmt: skip
            if args.json:
                print_json({"released": [mask(n) for n in result.retried],
                            "busy": [mask(n) for n in result.skipped]})  # fmt: skip
            else:
                out.print(f"released {len(result.retried)}, busy {len(result.skipped)}")
        elif args.parked == "resolve-handoff":
            if await recovery.resolve_set_aside(who, args.student_number, args.note) is None:
                raise CommandFailed(
                    f"no open set-aside hand-over for {mask(args.student_number)}:"
                    " `xueji parked handoffs` lists them"
                )
            if args.json:
                print_json({"student_number": mask(args.student_number), "resolved": True})
            else:
                out.print(f"{mask(args.student_number)} resolved")
        return 0

    return _run(work)


def cmd_calendar(args: argparse.Namespace) -> int:
    """xueji calendar load FILE | show YEAR."""

    async def work(ops: UseCases, who: Acting) -> int:
        if args.calendar == "load":
            try:
                data: Any = json.loads(_read_text(args.file))
                schedule = await ops.calendar.load(data, who, source=Path(args.file).name)
            except (KeyError, ValueError) as exc:
                # A schedule holds dates and holidays' names, no personal data: say what.
                raise CommandFailed(
                    f"the schedule in {args.file} was refused ({type(exc).__name__}: {exc}):"
                    ' it must be {"year", "holidays": {date: name}, "working_days": [...]}'
                ) from exc
            if args.json:
                print_json({"year": schedule.year, "loaded": True})
            else:
                out.print(f"loaded the official schedule of {schedule.year}")
            return 0
        official = await ops.calendar.official(args.year)
        if args.json:
            print_json({"year": args.year, "official": bool(official)})
            return 0
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
    runs.add_argument("--json", action="store_true", help="the runs as a JSON array")
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
    for command in psub.choices.values():
        command.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    park.set_defaults(func=cmd_parked)

    cal = sub.add_parser("calendar", help="official working-day schedules")
    csub = cal.add_subparsers(dest="calendar", required=True)
    load = csub.add_parser("load", help="load a year's schedule from a JSON file")
    load.add_argument("file")
    see = csub.add_parser("show", help="whether a year has an official schedule")
    see.add_argument("year", type=int)
    for command in csub.choices.values():
        command.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    cal.set_defaults(func=cmd_calendar)
