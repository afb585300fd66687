"""API tokens: issued, listed, rotated, revoked, sealed and unsealed. Only hashes are kept."""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from collections.abc import Sequence
from typing import Any

import asyncpg

from bridge.domain.access import (
    LAST_USED_RESOLUTION,
    SEAL_AFTER,
    TOKEN_PREFIX,
    PresentedToken,
    Principal,
    Role,
    present,
    secret_hash,
)
from bridge.errors import TokenSealed, Unauthenticated
from bridge.services.ports.access import IssuedToken, TokenInfo, TokenRow

_SEALED_MESSAGE = "token sealed after 180 days unused; ask an operator to unseal it"

# The requests as `r` (one row each, numbered `i`) and their tokens as `t`, checked and
# touched by one statement, for queries to build on. $1 and $2 are arrays of the token
# ids and of the sha256 of the secrets presented (one element per request), $3 SEAL_AFTER
# and $4 LAST_USED_RESOLUTION (token_arrays); {arrays} and {columns} are the requests'
# own columns, as `unnest` arguments and as names (tokens_of_requests). `t` has a row per
# request whose token exists.
# The arrays sit behind sub-selects so that the statement keeps one plan: given bare
# arrays, each execution's custom plan knows the batch's length, costs less than the
# generic plan and wins, so PostgreSQL planned every batch afresh. That took 0.45 ms, as
# long as looking up ten files (0.73 ms for a batch of one download against 0.25 ms on the
# cached plan; 0.094 against 0.053 ms a file in batches of ten).
# `touch` moves last_used_at at most once per resolution, and only for a token that passes
# every check, so a wrong secret never keeps a token from its seal. It skips a token whose
# row another transaction holds: that one is touching it (or revoking it) already, and a
# statement that waited for it would hold up everyone's requests, or deadlock with another
# instance's locking the same tokens in another order.
_REQUESTS_AND_TOKENS = """
WITH r AS (
    SELECT * FROM unnest((SELECT $1::text[]), (SELECT $2::text[]){arrays}) WITH ORDINALITY
        AS r(token_id, presented_hash{columns}, i)),
t AS (
    SELECT r.i, a.token_id, a.role, a.school_code, a.county_code, a.secret_hash,
           a.revoked_at IS NOT NULL AS revoked, a.sealed_at IS NOT NULL AS sealed,
           coalesce(a.last_used_at, a.created_at) <= now() - $3::interval AS overdue,
           now() AS db_now, a.secret_hash = r.presented_hash AS secret_matches
      FROM r JOIN api_tokens a ON a.token_id = r.token_id),
touch AS (
    UPDATE api_tokens a SET last_used_at = now()
     WHERE a.token_id IN (
         SELECT b.token_id FROM api_tokens b
          WHERE b.token_id IN (SELECT token_id FROM t
                                WHERE secret_matches AND NOT (revoked OR sealed OR overdue))
            AND (b.last_used_at IS NULL OR b.last_used_at < now() - $4::interval)
            FOR UPDATE SKIP LOCKED))
"""
# On `t`: the token is one TokenStore.admit will accept. Nothing a token could see comes
# back for a token it refuses.
TOKEN_ADMITTED = "t.secret_matches AND NOT (t.revoked OR t.sealed OR t.overdue)"


def tokens_of_requests(arrays: Sequence[str] = (), columns: Sequence[str] = ()) -> str:
    """The WITH clause of `r` and `t`, with the requests' own columns (array parameters
    from $5 on, and their names)."""
    return _REQUESTS_AND_TOKENS.format(
        arrays="".join(f", (SELECT {a})" for a in arrays),
        columns="".join(f", {c}" for c in columns),
    )


def token_row_of(row: asyncpg.Record, prefix: str = "") -> TokenRow | None:
    """A TokenRow from a row holding `t`'s columns (under *prefix*); None if it holds none."""
    if row[f"{prefix}token_id"] is None:
        return None
    return TokenRow(*(row[f"{prefix}{name}"] for name in TOKEN_COLUMNS))


# TokenRow's fields: the columns of `t` a statement built on tokens_of_requests returns.
TOKEN_COLUMNS = tuple(TokenRow.__dataclass_fields__)
_ONE_TOKEN = f"{tokens_of_requests()} SELECT {', '.join(TOKEN_COLUMNS)} FROM t"


def token_arrays(presented: Sequence[PresentedToken]) -> list[Any]:
    """The first four arguments of a statement built on tokens_of_requests."""
    return [
        [p.token_id for p in presented],
        [p.secret_hash for p in presented],
        SEAL_AFTER,
        LAST_USED_RESOLUTION,
    ]


def _new_secret() -> str:
    # 256 bits of randomness: a plain sha256 of it cannot be brute-forced, so no slow hash.
    return secrets.token_urlsafe(32)


def _principal(row: asyncpg.Record) -> Principal:
    return Principal(row["token_id"], Role(row["role"]), row["school_code"], row["county_code"])


def _info(row: asyncpg.Record) -> TokenInfo:
    p = _principal(row)
    return TokenInfo(
        p.token_id, p.role, p.scope, row["label"], row["created_at"], row["last_used_at"],
        row["sealed_at"], row["revoked_at"],
    )  # fmt: skip


class TokenStore:
    """The api_tokens table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def issue(
        self,
        role: Role,
        *,
        school_code: str | None = None,
        county_code: str | None = None,
        label: str | None = None,
    ) -> IssuedToken:
        """Create a token bound to one role and scope; its secret is returned only now."""
        if role is Role.SCHOOL and not school_code:
            raise ValueError("a school token needs --school-code")
        if role is Role.COUNTY and not county_code:
            raise ValueError("a county token needs --county-code")
        token_id = f"tok_{secrets.token_hex(6)}"
        secret = _new_secret()
        row = await self._pool.fetchrow(
            "INSERT INTO api_tokens (token_id, secret_hash, role, school_code, county_code,"
            " label) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            token_id, secret_hash(secret), role.value,
            school_code if role is Role.SCHOOL else None,
            county_code if role is Role.COUNTY else None, label,
        )  # fmt: skip
        assert row is not None
        p = _principal(row)
        return IssuedToken(token_id, f"{TOKEN_PREFIX}_{token_id}_{secret}", p.role, p.scope)

    async def rotate(self, token_id: str) -> IssuedToken | None:
        """Give the token a new secret; the old one stops working at once."""
        secret = _new_secret()
        row = await self._pool.fetchrow(
            "UPDATE api_tokens SET secret_hash = $2, rotated_at = now()"
            " WHERE token_id = $1 AND revoked_at IS NULL RETURNING *",
            token_id, secret_hash(secret),
        )  # fmt: skip
        if row is None:
            return None
        p = _principal(row)
        return IssuedToken(token_id, f"{TOKEN_PREFIX}_{token_id}_{secret}", p.role, p.scope)

    async def revoke(self, token_id: str) -> bool:
        """Revoke for good."""
        result: str = await self._pool.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE token_id = $1 AND revoked_at IS NULL",
            token_id,
        )
        return result.endswith(" 1")

    async def unseal(self, token_id: str) -> bool:
        """Lift a seal; the 180 days count again from now."""
        result: str = await self._pool.execute(
            "UPDATE api_tokens SET sealed_at = NULL, last_used_at = now()"
            " WHERE token_id = $1 AND sealed_at IS NOT NULL AND revoked_at IS NULL",
            token_id,
        )
        return result.endswith(" 1")

    async def seal_unused(self, now: dt.datetime | None = None) -> list[str]:
        """Seal every active token unused for 180 days; returns their ids."""
        rows = await self._pool.fetch(
            "UPDATE api_tokens SET sealed_at = coalesce($1, now())"
            " WHERE sealed_at IS NULL AND revoked_at IS NULL"
            " AND coalesce(last_used_at, created_at) <= coalesce($1, now()) - $2::interval"
            " RETURNING token_id",
            now, SEAL_AFTER,
        )  # fmt: skip
        return [r["token_id"] for r in rows]

    async def list(self) -> list[TokenInfo]:
        """Every token, newest first."""
        rows = await self._pool.fetch("SELECT * FROM api_tokens ORDER BY created_at DESC")
        return [_info(r) for r in rows]

    async def get(self, token_id: str) -> TokenInfo | None:
        """One token's listing."""
        row = await self._pool.fetchrow("SELECT * FROM api_tokens WHERE token_id = $1", token_id)
        return _info(row) if row else None

    async def authenticate(self, token: str) -> Principal:
        """The principal of a presented token, or Unauthenticated / TokenSealed."""
        presented = present(token)
        return await self.admit(await self.token_row(presented), presented)

    async def token_row(self, presented: PresentedToken) -> TokenRow | None:
        """The token's row for admit(), read (and touched, if due) in one round trip."""
        row = await self._pool.fetchrow(_ONE_TOKEN, *token_arrays([presented]))
        return token_row_of(row) if row is not None else None

    async def admit(self, row: TokenRow | None, presented: PresentedToken) -> Principal:
        """Decide on a token from its row as read by tokens_of_requests (`t`).

        Sealing is decided here too, so a token past 180 days is refused even before the
        periodic sealing job has run.
        """
        if row is None or row.revoked:
            raise Unauthenticated("unknown or revoked token")
        if not hmac.compare_digest(row.secret_hash, presented.secret_hash):
            raise Unauthenticated("unknown or revoked token")
        if row.sealed:
            raise TokenSealed(_SEALED_MESSAGE)
        if row.overdue:
            # Conditional, so that of two requests racing here only one seals (and audits).
            sealed_now = await self._pool.fetchval(
                "UPDATE api_tokens SET sealed_at = now() WHERE token_id = $1"
                " AND sealed_at IS NULL AND coalesce(last_used_at, created_at)"
                " <= now() - $2::interval RETURNING token_id",
                presented.token_id, SEAL_AFTER,
            )  # fmt: skip
            raise TokenSealed(_SEALED_MESSAGE, sealed_now=sealed_now)
        return Principal(row.token_id, Role(row.role), row.school_code, row.county_code)
