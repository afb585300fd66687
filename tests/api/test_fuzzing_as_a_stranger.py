"""Test as strangers would: schemathesis's own command line fuzzes the running bridge from
its published /v1/openapi.json, every check on (`--checks all`), every method (its coverage
phase sends the methods an operation does not have), with a school's token, the
province's, and none; the tokens' runs are bound to a real school and child, so that
they reach downloads, ranges and arrivals. The document itself is validated with
openapi-spec-validator.

The bridge serves on loopback with real PostgreSQL and RabbitMQ (school_api_env); the
run is bounded by --max-time and --max-examples so that it takes about a minute.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import pytest
from openapi_spec_validator import validate

from tests.conftest import AMQP_URL, PG_ADMIN_URL
from tests.support.school_api import SCHOOL, school_api_env

pytestmark = pytest.mark.live

ST = str(Path(sys.executable).with_name("st"))
# Rules the schema cannot state: an arrival date in the future (422), a cursor this API
# did not give (400), a child another school admitted (409), a range beyond the file (416).
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "304", "400", "401", "403", "404", "409", "416", "422"]
"""
MAX_TIME_S = 15  # per run; three runs


async def test_the_openapi_document_is_valid_openapi() -> None:
    async with (
        school_api_env(PG_ADMIN_URL, AMQP_URL, size=2, seed=61) as env,
        aiohttp.ClientSession() as s,
        s.get(f"{env.url}/v1/openapi.json") as r,
    ):
        document = await r.json()
    validate(document)  # raises on anything OpenAPI 3.1 does not allow
    assert document["openapi"].startswith("3.1")


async def fuzz(
    url: str, headers: list[str], workdir: Path, name: str, known: dict[str, str] | None = None
) -> tuple[int, str]:
    """One run of `st`; *known* binds path parameters to real values (a school's own child),
    so that the fuzzing reaches downloads, ranges and arrivals, not only 404s."""
    config = workdir / f"{name}.toml"
    bound = "".join(f'"path.{k}" = "{v}"\n' for k, v in (known or {}).items())
    config.write_text(CONFIG + (f"\n[parameters]\n{bound}" if bound else ""))
    args = [
        ST, "--config-file", str(config), "--no-color", "run", f"{url}/v1/openapi.json",
        "--checks", "all", "--mode", "all", "--phases", "examples,coverage,fuzzing",
        "--max-examples", "25", "--max-time", str(MAX_TIME_S), "--seed", "16",
        # One worker: schemathesis's threads parsing source at once trip CPython 3.11's
        # ast ("AST constructor recursion depth mismatch"), a fault of the tool, not ours.
        "--workers", "1", "--request-timeout", "10", "--suppress-health-check", "all",
        "--report", "junit", "--report-junit-path", str(workdir / f"{name}.xml"),
        *(arg for header in headers for arg in ("-H", header)),
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=workdir, env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), MAX_TIME_S + 120)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


async def test_the_running_bridge_holds_up_to_schemathesis_all_checks_all_methods(
    tmp_path: Path,
) -> None:
    async with school_api_env(PG_ADMIN_URL, AMQP_URL, size=6, seed=62) as env:
        child = env.children_of(SCHOOL)[0].final_student_number
        school = await fuzz(
            env.url, [f"Authorization: Bearer {env.tokens['school']}"], tmp_path, "school",
            known={"school_code": SCHOOL, "student_number": child},
        )  # fmt: skip
        province = await fuzz(
            env.url, [f"Authorization: Bearer {env.tokens['province']}"], tmp_path, "province",
            known={"school_code": SCHOOL, "student_number": child},
        )  # fmt: skip
        stranger = await fuzz(env.url, [], tmp_path, "stranger")
    for code, output in (school, province, stranger):
        assert code == 0, output[-12000:]
        assert "No issues found" in output or " passed" in output, output[-3000:]
