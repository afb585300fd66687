"""`xueji tokens ...` and `xueji audit ...`: scriptable, shown once, hashed, audited."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import asyncpg
import pytest

from bridge.adapters.postgres.tokens import TokenStore
from bridge.entrypoints.cli import main
from bridge.errors import TokenSealed, Unauthenticated
from tests.conftest import MakeDatabase

pytestmark = pytest.mark.live


@pytest.fixture
async def cli(
    make_database: MakeDatabase, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    url = await make_database("xueji_cli_test")
    monkeypatch.setenv("BRIDGE_DATABASE_URL", url)

    async def run(*argv: str) -> tuple[int, str]:
        # The CLI runs its own event loop, so it gets a thread of its own.
        code = await asyncio.to_thread(main, list(argv))
        return code, capsys.readouterr().out

    run.url = url  # type: ignore[attr-defined]
    return run


async def test_tokens_are_issued_listed_rotated_revoked_and_audited(cli: Any) -> None:
    code, out = await cli(
        "tokens", "issue", "--role", "school", "--school-code", "2111010502", "--json"
    )
    assert code == 0
    issued = json.loads(out)
    assert issued["role"] == "school" and issued["scope"] == {"school_code": "2111010502"}
    assert set(issued) == {"token_id", "token", "role", "scope"}
    code, out = await cli(
        "tokens", "issue", "--role", "county", "--county-code", "110105", "--json"
    )
    county = json.loads(out)
    assert county["scope"] == {"county_code": "110105"}
    code, out = await cli("tokens", "issue", "--role", "province", "--json")
    assert json.loads(out)["scope"] == {}

    pool = await asyncpg.create_pool(cli.url, min_size=1, max_size=2)
    try:
        store = TokenStore(pool)
        assert (await store.authenticate(issued["token"])).school_code == "2111010502"
        stored = await pool.fetchval(
            "SELECT secret_hash FROM api_tokens WHERE token_id = $1", issued["token_id"]
        )
        assert issued["token"] not in stored and issued["token"].split("_", 3)[3] not in stored
        assert stored == hashlib.sha256(issued["token"].split("_", 3)[3].encode()).hexdigest()

        code, out = await cli("tokens", "list", "--json")
        listed = {t["token_id"]: t for t in json.loads(out)}
        assert listed[issued["token_id"]]["state"] == "active"
        assert issued["token"] not in out

        code, out = await cli("tokens", "rotate", issued["token_id"], "--json")
        rotated = json.loads(out)
        assert rotated["token_id"] == issued["token_id"] and rotated["token"] != issued["token"]
        with pytest.raises(Unauthenticated):
            await store.authenticate(issued["token"])
        await store.authenticate(rotated["token"])

        code, _ = await cli("tokens", "revoke", issued["token_id"])
        assert code == 0
        with pytest.raises(Unauthenticated):
            await store.authenticate(rotated["token"])
        code, _ = await cli("tokens", "revoke", issued["token_id"])
        assert code == 1  # nothing left to revoke

        code, out = await cli("audit", "--token-id", issued["token_id"], "--json")
        actions = [(e["action"], e["outcome"]) for e in json.loads(out)]
        assert actions == [
            ("token.revoke", "not_found"), ("token.revoke", "ok"), ("token.rotate", "ok"),
            ("token.issue", "ok"),
        ]  # fmt: skip
        assert all(e["actor"].startswith("cli:") for e in json.loads(out))
        assert rotated["token"] not in out
    finally:
        await pool.close()


async def test_unused_tokens_are_sealed_then_unsealed_and_both_are_audited(cli: Any) -> None:
    _, out = await cli("tokens", "issue", "--role", "county", "--county-code", "110105", "--json")
    token = json.loads(out)
    pool = await asyncpg.create_pool(cli.url, min_size=1, max_size=2)
    try:
        await pool.execute(
            "UPDATE api_tokens SET created_at = now() - interval '200 days',"
            " last_used_at = now() - interval '180 days 1 minute' WHERE token_id = $1",
            token["token_id"],
        )
        code, out = await cli("tokens", "seal-unused", "--json")
        assert json.loads(out) == {"sealed": [token["token_id"]]}
        store = TokenStore(pool)
        with pytest.raises(TokenSealed):
            await store.authenticate(token["token"])
        _, out = await cli("tokens", "list", "--json")
        assert json.loads(out)[0]["state"] == "sealed"
        code, _ = await cli("tokens", "unseal", token["token_id"])
        assert code == 0
        assert (await store.authenticate(token["token"])).county_code == "110105"
        _, out = await cli("audit", "--token-id", token["token_id"], "--json")
        assert [e["action"] for e in json.loads(out)] == [
            "token.unseal",
            "token.seal",
            "token.issue",
        ]
    finally:
        await pool.close()


async def test_a_school_token_needs_its_school_code(cli: Any) -> None:
    code, _ = await cli("tokens", "issue", "--role", "school", "--json")
    assert code == 2
    with pytest.raises(SystemExit):
        await cli("tokens", "issue", "--role", "school", "--school-code", "12345")
