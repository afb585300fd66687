"""Record files at rest: ``xueji files keys | new-key | rotate-key | purge``.

Keys come from BRIDGE_FILE_KEYS (or BRIDGE_FILE_KEYS_FILE) as for ``xueji run``; a wrong
or missing key is refused with the setting to fix, like at start (``xueji`` exits 2).
Student numbers are shown masked; ``--json`` gives the same for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console

from bridge.bootstrap import Tools, new_file_key, operator_tools
from bridge.domain.student_number import mask
from bridge.entrypoints.guard import CommandFailed
from bridge.entrypoints.operator_commands import actor
from bridge.entrypoints.progress import Ticker, wanted
from bridge.entrypoints.tables import print_table
from bridge.services.retention import PurgeReport
from bridge.settings import Settings

out = Console()
err = Console(stderr=True)


def _run(work: Callable[[Tools], Awaitable[int]], *, keys_checked: bool = True) -> int:
    """*work* with what bootstrap builds for a command; with *keys_checked*, the keys are
    checked against the database first, as at start (FileKeysInvalid: exit 2)."""

    async def main() -> int:
        async with operator_tools(Settings()) as tools:
            if keys_checked:
                await tools.use_cases.file_keys.check()
            return await work(tools)

    return asyncio.run(main())


# --- keys ---------------------------------------------------------------------------------
def _cmd_keys(args: argparse.Namespace) -> int:
    async def work(tools: Tools) -> int:
        keys = tools.use_cases.file_keys
        usage = await keys.usage()
        counts = await keys.counts()
        rows = [
            {
                "key_id": u.key_id, "active": u.active, "configured": u.configured,
                "files": u.files, "sealed_bytes": u.sealed_bytes,
                "first_used_at": u.first_used_at.isoformat() if u.first_used_at else None,
                "retirable": u.retirable,
            }
            for u in usage
        ]  # fmt: skip
        if args.json:
            print(json.dumps({"keys": rows, "files": counts}))
            return 0
        shown = []
        for r in rows:
            status = (
                "in use" if r["files"] else
                "active" if r["active"] else "unused: may retire"
            )  # fmt: skip
            shown.append((
                str(r["key_id"]), "yes" if r["active"] else "", "yes" if r["configured"] else "",
                str(r["files"]), f"{int(r['sealed_bytes'] or 0) / 2**20:.1f}",
                str(r["first_used_at"] or "")[:19], status,
            ))  # fmt: skip
        print_table(
            out, "record file keys (BRIDGE_FILE_KEYS)",
            ("key id", "wraps new files", "configured", "files", "MB", "first used", "status"),
            shown, right=("files", "MB"),
        )  # fmt: skip
        out.print(
            f"files: {counts['sealed']} sealed, {counts['in_clear']} in the clear,"
            f" {counts['erased']} erased after retention, {counts['damaged']} damaged"
        )
        return 0

    return _run(work)


def _cmd_new_key(args: argparse.Namespace) -> int:
    # Only the key line goes to stdout: `xueji files new-key --id k2027 >> keys` works.
    print(new_file_key(args.id))
    err.print(
        "add it in front of BRIDGE_FILE_KEYS (or the BRIDGE_FILE_KEYS_FILE) on every instance,"
        " keep a copy where the database's backups are not, then `xueji files rotate-key`",
        markup=False, highlight=False,
    )  # fmt: skip
    return 0


def _cmd_rotate(args: argparse.Namespace) -> int:
    async def work(tools: Tools) -> int:
        keys = tools.use_cases.file_keys
        active = keys.active_id

        ticker = Ticker(err, shown=wanted(args, err))

        def progress(done: int) -> None:
            ticker(f"re-wrapped {done} data keys under {active}")

        totals = await keys.rotate(batch=args.batch, progress=progress)
        ticker.done()
        usage = await keys.usage()
        left = {u.key_id: u.files for u in usage if not u.active and u.files}
        if args.json:
            print(
                json.dumps(
                    {
                        "active": active,
                        "rewrapped": totals.done,
                        "damaged": list(totals.damaged),
                        "still_using_other_keys": left,
                    }
                )
            )
        else:
            out.print(f"{totals.done} data keys re-wrapped under {active}.")
            if totals.damaged:
                out.print(
                    f"{len(totals.damaged)} files failed authentication: reported, and"
                    " fetched again by reconciliation; they keep their old key till then."
                )
            retired = [u.key_id for u in usage if u.retirable]
            if retired:
                out.print(
                    "No file uses " + ", ".join(retired) + " any more: remove them from"
                    " BRIDGE_FILE_KEYS once no backup you may restore needs them."
                )
        if left:
            raise CommandFailed(
                f"{sum(left.values())} record files still use {', '.join(sorted(left))}:"
                " keep those keys, and run rotate-key again once every instance has the new"
                " key first in BRIDGE_FILE_KEYS and reconciliation has fetched damaged files"
                " again"
            )
        return 0

    return _run(work)


# --- migrate ------------------------------------------------------------------------------
async def seal_stored_files(
    tools: Tools, *, progress_shown: bool = True, speak: bool = True
) -> dict[str, Any]:
    """`xueji migrate`'s second half: seal the files stored before encryption, in resumable
    batches (a rerun goes on where an interrupted one stopped; two can run at once).
    Returns what it did, for ``--json``; with *speak*, says it on stdout too."""
    keys, settings = tools.use_cases.file_keys, tools.settings
    left = await keys.in_clear()
    if not left and not (settings.file_keys or settings.file_keys_file):
        if speak:
            print("no record file is stored in the clear (no key was needed for this)")
        return {"sealed": 0, "in_clear": 0, "damaged": 0, "key_id": None}

    ticker = Ticker(err, shown=progress_shown and bool(left))

    def progress(done: int) -> None:
        ticker(f"sealed {done} of {left} record files stored in the clear")

    # Without a key, FileKeysInvalid names the setting to fix.
    totals = await keys.seal_in_clear(progress=progress)
    ticker.done()
    summary = {
        "sealed": totals.done, "in_clear": await keys.in_clear(),
        "damaged": len(totals.damaged), "key_id": keys.active_id,
    }  # fmt: skip
    if speak:
        print(f"record files sealed under key {keys.active_id}: {totals.done} now,"
              f" {summary['in_clear']} left in the clear")  # fmt: skip
        if totals.damaged:
            print(f"{len(totals.damaged)} of them did not match their sha256: sealed all the"
                  " same, reported, and fetched again by the next reconciliation")  # fmt: skip
    return summary


# --- purge --------------------------------------------------------------------------------
def _report_json(report: PurgeReport) -> dict[str, Any]:
    return {
        "dry_run": report.dry_run, "run_id": report.run_id,
        "cutoff": report.cutoff.isoformat(),
        "children": [
            {"student_number": mask(c.student_number), "phase": c.phase,
             "closed_at": c.closed_at.isoformat() if c.closed_at else None,
             "reason": c.reason.value, "again": c.again}
            for c in report.children
        ],
        "files": [
            {"sha256": f.sha256, "reason": f.reason.value,
             "student_numbers": [mask(n) for n in f.student_numbers]}
            for f in report.files
        ],
        "parked_messages": report.parked,
    }  # fmt: skip


def _cmd_purge(args: argparse.Namespace) -> int:
    async def work(tools: Tools) -> int:
        retention = tools.use_cases.retention
        if args.dry_run:
            report = await retention.plan(limit=args.limit)
        else:
            # Another instance purging: PurgeBusy, exit 3 with a sentence (guard.py).
            report = await retention.purge(trigger="cli", actor=actor())
        if args.json:
            print(json.dumps(_report_json(report)))
            return 0
        _print_report(report, tools.settings.file_retention_days)
        return 0

    # Erasing needs no key: the sealed bytes and the wrapped data keys simply go.
    return _run(work, keys_checked=False)


def _print_report(report: PurgeReport, days: float) -> None:
    verb = "would be erased" if report.dry_run else "erased"
    china = dt.timezone(dt.timedelta(hours=8))
    out.print(
        f"retention {days:g} days: hand-overs closed before"
        f" {report.cutoff.astimezone(china):%Y-%m-%d %H:%M} (China time)"
    )
    if report.children:
        rows = []
        for c in report.children:
            closed = c.closed_at.astimezone(china).strftime("%Y-%m-%d") if c.closed_at else ""
            why = c.reason.value + (" (data that came later)" if c.again else "")
            rows.append((mask(c.student_number), c.phase, closed, why))
        print_table(
            out, f"children whose personal data {verb}",
            ("student number", "phase", "closed", "reason"), rows,
        )  # fmt: skip
    if report.files:
        # The digest's first 16 hex digits name the file well enough (the JSON has all 64).
        files = [
            (f.sha256[:16], f.reason.value, ", ".join(mask(n) for n in f.student_numbers))
            for f in report.files
        ]
        print_table(
            out, f"record files {verb} (sealed bytes and data key)",
            ("sha256 (first 16)", "reason", "children"), files,
        )  # fmt: skip
    out.print(
        f"{len(report.children)} children, {len(report.files)} record files,"
        f" {report.parked} resolved parked message bodies {verb}."
    )


def register_file_commands(sub: Any) -> None:
    """Add ``xueji files ...`` to the command line."""
    files = sub.add_parser("files", help="record files at rest: keys, rotation, retention")
    cmds = files.add_subparsers(dest="files_command", required=True)
    keys = cmds.add_parser("keys", help="which keys wrap the stored files, and which can retire")
    keys.add_argument("--json", action="store_true")
    keys.set_defaults(func=_cmd_keys)
    new = cmds.add_parser("new-key", help="print a new key line for BRIDGE_FILE_KEYS")
    new.add_argument("--id", default=f"k{dt.date.today():%Y%m%d}", help="the key's id")
    new.set_defaults(func=_cmd_new_key)
    rotate = cmds.add_parser(
        "rotate-key", help="re-wrap every file's data key under the active key (resumable)"
    )
    rotate.add_argument("--batch", type=int, default=1000)
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(func=_cmd_rotate)
    purge = cmds.add_parser(
        "purge", help="erase what retention lets go now (BRIDGE_FILE_RETENTION_DAYS)"
    )
    purge.add_argument("--dry-run", action="store_true", help="show what would go; change nothing")
    purge.add_argument("--json", action="store_true")
    purge.add_argument("--limit", type=int, default=100_000, help="children listed by --dry-run")
    purge.set_defaults(func=_cmd_purge)
