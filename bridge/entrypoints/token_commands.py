"""`xueji tokens ...` and `xueji audit ...`: API tokens and the audit log, for operators.

Every token operation is audited with the operating-system user as the actor. A token's
secret is printed once, at issue or rotation, and never stored (only its hash is).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.bootstrap import operator_tools
from bridge.domain.access import Role
from bridge.domain.student_number import mask
from bridge.entrypoints.guard import CommandFailed, Exit
from bridge.entrypoints.operator_commands import actor, out, print_json
from bridge.entrypoints.tables import print_table
from bridge.services.acting import Acting
from bridge.services.ports.access import IssuedToken, TokenInfo
from bridge.services.use_cases import UseCases
from bridge.settings import Settings

Command = Callable[[UseCases, Acting, argparse.Namespace], Awaitable[int]]


def _code(pattern: str, what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise argparse.ArgumentTypeError(f"{what} must be {pattern}")
        return value

    return check


def _issued(token: IssuedToken) -> dict[str, Any]:
    return {
        "token_id": token.token_id,
        "token": token.token,
        "role": token.role.value,
        "scope": token.scope,
    }


def _listed(info: TokenInfo) -> dict[str, Any]:
    def when(value: Any) -> str | None:
        return value.isoformat() if value else None

    return {
        "token_id": info.token_id, "role": info.role.value, "scope": info.scope,
        "label": info.label, "state": info.state, "created_at": when(info.created_at),
        "last_used_at": when(info.last_used_at), "sealed_at": when(info.sealed_at),
        "revoked_at": when(info.revoked_at),
    }  # fmt: skip


def _print(args: argparse.Namespace, body: Any, text: str) -> None:
    print(json.dumps(body, ensure_ascii=False) if args.json else text)


async def _issue(ops: UseCases, who: Acting, args: argparse.Namespace) -> int:
    role = Role(args.role)
    if role is Role.SCHOOL and not args.school_code:
        raise CommandFailed("a school token needs --school-code (10 digits)", Exit.USAGE)
    if role is Role.COUNTY and not args.county_code:
        raise CommandFailed("a county token needs --county-code (6 digits)", Exit.USAGE)
    token = await ops.tokens.issue(
        role, who, school_code=args.school_code, county_code=args.county_code, label=args.label
    )
    scope = " ".join(f"{k}={v}" for k, v in token.scope.items())
    _print(
        args, _issued(token),
        f"{token.token_id} ({role.value} {scope})\n{token.token}\n"
        "The token is shown only now: hand it over safely.",
    )  # fmt: skip
    return 0


async def _list(ops: UseCases, who: Acting, args: argparse.Namespace) -> int:
    infos = await ops.tokens.list()
    if args.json:
        print_json([_listed(i) for i in infos])
        return 0
    if not infos:
        print("no tokens")
        return 0
    rows = [
        (i.token_id, i.role.value, " ".join(i.scope.values()) or "-", i.state, i.label or "",
         f"{i.last_used_at:%Y-%m-%d}" if i.last_used_at else "never")
        for i in infos
    ]  # fmt: skip
    print_table(out, "API tokens", ("token id", "role", "scope", "state", "label", "last used"),
                rows)  # fmt: skip
    return 0


async def _rotate(ops: UseCases, who: Acting, args: argparse.Namespace) -> int:
    token = await ops.tokens.rotate(args.token_id, who)
    if token is None:
        raise CommandFailed(f"no active token {args.token_id}: `xueji tokens list` shows them")
    _print(args, _issued(token), f"{token.token_id}\n{token.token}\nThe old secret is void.")
    return 0


def _simple(what: str, done: str, failed: str) -> Command:
    async def run(ops: UseCases, who: Acting, args: argparse.Namespace) -> int:
        act = ops.tokens.revoke if what == "revoke" else ops.tokens.unseal
        ok = await act(args.token_id, who)
        body = {"token_id": args.token_id, "ok": ok}
        _print(args, body, f"{args.token_id} {done}" if ok else f"{args.token_id}: {failed}")
        return 0 if ok else 1

    return run


async def _seal(ops: UseCases, who: Acting, args: argparse.Namespace) -> int:
    sealed = await ops.tokens.seal_unused(who)
    _print(args, {"sealed": sealed}, f"sealed {len(sealed)} tokens unused for 180 days")
    return 0


async def _audit(ops: UseCases, who: Acting, args: argparse.Namespace) -> int:
    entries = await ops.audit_trail.query(
        who, student_number=args.student_number, token_id=args.token_id, limit=args.limit
    )
    # Masked as everywhere on the command line: the operator who asks knows the number.
    rows = [
        e.model_dump() | {
            "at": e.at.isoformat(),
            "student_number": mask(e.student_number) if e.student_number else None,
            "student_numbers": [mask(n) for n in e.student_numbers],
        }
        for e in entries or []
    ]  # fmt: skip
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    shown = []
    for r in rows:
        listed = f"{len(r['student_numbers'])} children" if r["student_numbers"] else None
        target = r["student_number"] or listed or r["target_token"] or "-"
        shown.append((str(r["at"])[:19], r["actor"], r["action"], target, r["outcome"]))
    print_table(out, "audit log", ("at", "actor", "action", "target", "outcome"), shown)
    return 0


async def _with_tools(command: Command, args: argparse.Namespace) -> int:
    async with operator_tools(Settings()) as tools:
        return await command(tools.use_cases, Acting(actor()), args)


def _bind(parser: argparse.ArgumentParser, command: Command) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    parser.set_defaults(func=lambda args: asyncio.run(_with_tools(command, args)))


def register_access_commands(sub: Any) -> None:
    """Add `tokens` and `audit` to the `xueji` sub-commands."""
    tokens = sub.add_parser("tokens", help="API tokens: issue, list, rotate, revoke, unseal")
    ops = tokens.add_subparsers(dest="tokens_command", required=True)
    issue = ops.add_parser("issue", help="issue a token bound to one role and scope")
    issue.add_argument("--role", required=True, choices=[r.value for r in Role])
    issue.add_argument("--school-code", type=_code(r"[0-9]{10}", "--school-code"))
    issue.add_argument("--county-code", type=_code(r"[0-9]{6}", "--county-code"))
    issue.add_argument("--label", help="who holds it, e.g. a school's registry clerk")
    _bind(issue, _issue)
    _bind(ops.add_parser("list", help="every token (never its secret)"), _list)
    for name, command, text in (
        ("rotate", _rotate, "give the token a new secret; the old one stops at once"),
        ("revoke", _simple("revoke", "revoked", "no active token"), "revoke for good"),
        ("unseal", _simple("unseal", "unsealed", "not sealed or revoked"),
         "lift a seal after 180 days unused"),
    ):  # fmt: skip
        parser = ops.add_parser(name, help=text)
        parser.add_argument("token_id")
        _bind(parser, command)
    _bind(ops.add_parser("seal-unused", help="seal tokens unused for 180 days now"), _seal)
    audit = sub.add_parser("audit", help="the audit log, by child or by token")
    which = audit.add_mutually_exclusive_group(required=True)
    which.add_argument("--student-number")
    which.add_argument("--token-id")
    audit.add_argument("--limit", type=int, default=100)
    _bind(audit, _audit)
