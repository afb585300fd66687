"""Acting on the simulated registries as other parties would (schools, other systems)."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import aiohttp

REGISTRY_TOKEN = "Bearer dev-registry-token"


async def call(
    url: str, method: str, path: str, *, json: Any = None, data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:  # fmt: skip
    """One request with the registry's bearer token; (status, JSON body or None)."""
    all_headers = {"Authorization": REGISTRY_TOKEN, **(headers or {})}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url + path, json=json, data=data, headers=all_headers) as resp,
    ):
        body = await resp.json() if resp.content_type.endswith("json") else None
        return resp.status, body


async def register_elsewhere(sim_url: str, number: str, graduated: dict[str, Any]) -> None:
    """Another system registers *graduated*'s child under *number* (B1)."""
    body = {
        "entry_year": graduated["entry_year"],
        "child": graduated["child"],
        "kindergarten_code": graduated["kindergarten_code"],
        "graduated_on": graduated["graduated_on"],
        "requested_school_code": None,
        "record_file": {"sha256": "a" * 64, "size": 1, "media_type": "application/json"},
    }
    status, answer = await call(
        sim_url, "PUT", f"/registry/v1/students/{number}/intake", json=body,
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )  # fmt: skip
    assert status in (200, 201), answer


async def replace_file_claim(
    sim_url: str, graduated: dict[str, Any], content: bytes, *, upload: bool
) -> None:
    """Someone re-registers the child with another file (and uploads it if *upload*)."""
    number = graduated["student_number"]
    sha = hashlib.sha256(content).hexdigest()
    body = {
        "entry_year": graduated["entry_year"],
        "child": graduated["child"],
        "kindergarten_code": graduated["kindergarten_code"],
        "graduated_on": graduated["graduated_on"],
        "requested_school_code": graduated["destination_school_code"],
        "record_file": {"sha256": sha, "size": len(content), "media_type": "application/json"},
    }
    status, answer = await call(
        sim_url, "PUT", f"/registry/v1/students/{number}/intake", json=body,
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )  # fmt: skip
    assert status in (200, 201), answer
    if upload:
        digest = base64.b64encode(hashlib.sha256(content).digest()).decode()
        status, answer = await call(
            sim_url, "PUT", f"/registry/v1/students/{number}/record-file", data=content,
            headers={"Content-Type": "application/json", "Content-Digest": f"sha-256=:{digest}:"},
        )  # fmt: skip
        assert status == 204, answer


async def report_arrival(sim_url: str, number: str, school_code: str, on: str) -> None:
    """The school reports the child's arrival at the registry (B6)."""
    status, answer = await call(
        sim_url, "POST", f"/registry/v1/students/{number}/arrival",
        json={"school_code": school_code, "arrived_on": on},
    )  # fmt: skip
    assert status == 200, answer


async def patch_roster(sim_url: str, number: str, **changes: Any) -> None:
    """Change the preschool roster's entry of a child (simulator admin)."""
    async with (
        aiohttp.ClientSession() as session,
        session.patch(f"{sim_url}/_sim/preschool/children/{number}", json=changes) as resp,
    ):
        assert resp.status == 200, await resp.text()
