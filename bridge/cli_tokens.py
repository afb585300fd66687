"""`xueji tokens ...` and `xueji audit ...`: API tokens and the audit log, for operators.

Every token operation is audited with the operating-system user as the actor. A token's
secret is printed once, at issue or rotation, and never stored (only its hash is).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.adapters.postgres.audit import AuditLog
from bridge.adapters.postgres.tokens import IssuedToken, TokenInfo, TokenStore
from bridge.domain.access import Role
from bridge.settings import Settings

Command = Callable[[TokenStore, AuditLog, argparse.Namespace], Awaitable[int]]


def _code(pattern: str, what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise argparse.ArgumentTypeError(f"{what} must be {pattern}")
        return value

    return check


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "cli:unknown"


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


async def _issue(tokens: TokenStore, audit: AuditLog, args: argparse.Namespace) -> int:
    role = Role(args.role)
    if role is Role.SCHOOL and not args.school_code:
        print("a school token needs --school-code", file=sys.stderr)
        return 2
    if role is Role.COUNTY and not args.county_code:
        print("a county token needs --county-code", file=sys.stderr)
        return 2
    token = await tokens.issue(
        role, school_code=args.school_code, county_code=args.county_code, label=args.label
    )
    await audit.record(
        action="token.issue", outcome="ok", actor=_actor(), target_token=token.token_id,
        detail={"role": role.value, **token.scope},
    )  # fmt: skip
    scope = " ".join(f"{k}={v}" for k, v in token.scope.items())
    _print(
        args, _issued(token),
        f"{token.token_id} ({role.value} {scope})\n{token.token}\n"
        "The token is shown only now: hand it over safely.",
    )  # fmt: skip
    return 0


async def _list(tokens: TokenStore, audit: AuditLog, args: argparse.Namespace) -> int:
    infos = await tokens.list()
    lines = []
    for i in infos:
        used = f"last used {i.last_used_at:%Y-%m-%d}" if i.last_used_at else "never used"
        scope = " ".join(i.scope.values()) or "-"
        lines.append(f"{i.token_id}  {i.role.value:<8} {scope:<10} {i.state:<8} {used}")
    _print(args, [_listed(i) for i in infos], "\n".join(lines) or "no tokens")
    return 0


async def _rotate(tokens: TokenStore, audit: AuditLog, args: argparse.Namespace) -> int:
    token = await tokens.rotate(args.token_id)
    await audit.record(
        action="token.rotate", outcome="ok" if token else "not_found", actor=_actor(),
        target_token=args.token_id,
    )  # fmt: skip
    if token is None:
        print(f"no active token {args.token_id}", file=sys.stderr)
        return 1
    _print(args, _issued(token), f"{token.token_id}\n{token.token}\nThe old secret is void.")
    return 0


def _simple(method: str, action: str, done: str, failed: str) -> Command:
    async def run(tokens: TokenStore, audit: AuditLog, args: argparse.Namespace) -> int:
        ok: bool = await getattr(tokens, method)(args.token_id)
        await audit.record(
            action=action, outcome="ok" if ok else "not_found", actor=_actor(),
            target_token=args.token_id,
        )  # fmt: skip
        body = {"token_id": args.token_id, "ok": ok}
        _print(args, body, f"{args.token_id} {done}" if ok else f"{args.token_id}: {failed}")
        return 0 if ok else 1

    return run


async def _seal(tokens: TokenStore, audit: AuditLog, args: argparse.Namespace) -> int:
    from bridge.services.sealing import seal_unused_tokens

    sealed = await seal_unused_tokens(tokens, audit, actor=_actor())
    _print(args, {"sealed": sealed}, f"sealed {len(sealed)} tokens unused for 180 days")
    return 0


async def _audit(tokens: TokenStore, audit: AuditLog, args: argparse.Namespace) -> int:
    entries = await audit.query(
        student_number=args.student_number, actor=args.token_id, limit=args.limit
    )
    rows = [
        {
            "at": e.at.isoformat(), "actor": e.actor, "role": e.role,
            "school_code": e.school_code, "county_code": e.county_code, "action": e.action,
            "student_number": e.student_number, "target_token": e.target_token,
            "remote": e.remote, "outcome": e.outcome, "detail": e.detail,
            "student_numbers": list(e.student_numbers),
        }
        for e in entries
    ]  # fmt: skip
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        for r in rows:
            listed = f"{len(r['student_numbers'])} children" if r["student_numbers"] else None
            target = r["student_number"] or listed or r["target_token"] or "-"
            print(f"{r['at']}  {r['actor']:<20} {r['action']:<18} {target:<20} {r['outcome']}")
    return 0


async def _with_stores(command: Command, args: argparse.Namespace) -> int:
    from bridge.bootstrap import open_pool

    pool = await open_pool(Settings())
    try:
        return await command(TokenStore(pool), AuditLog(pool), args)
    finally:
        await pool.close()


def _bind(parser: argparse.ArgumentParser, command: Command) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    parser.set_defaults(func=lambda args: asyncio.run(_with_stores(command, args)))


def register_access_commands(sub: Any) -> None:
    """Add `tokens` and `audit` to the `xueji` sub-commands."""
    tokens = sub.add_parser("tokens", help="API tokens: issue, list, rotate, revoke, unseal")
    ops = tokens.add_subparsers(dest="tokens_command", required=True)
    issue = ops.add_parser("issue", help="issue a token bound to one role and scope")
    issue.add_argument("--role", required=True, choices=[r.value for r in Role])
    issue.add_argument("--school-code", type=_code(r"\d{10}", "--school-code"))
    issue.add_argument("--county-code", type=_code(r"\d{6}", "--county-code"))
    issue.add_argument("--label", help="who holds it, e.g. a school's registry clerk")
    _bind(issue, _issue)
    _bind(ops.add_parser("list", help="every token (never its secret)"), _list)
    for name, command, text in (
        ("rotate", _rotate, "give the token a new secret; the old one stops at once"),
        ("revoke", _simple("revoke", "token.revoke", "revoked", "no active token"),
         "revoke for good"),
        ("unseal", _simple("unseal", "token.unseal", "unsealed", "not sealed or revoked"),
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
