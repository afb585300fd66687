"""Driving the simulator's admin endpoints from tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class SimulatorHandle:
    """A running simulator on loopback."""

    url: str

    async def _request(self, method: str, path: str, json: Any = None) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, json=json) as resp,
        ):
            resp.raise_for_status()
            return await resp.json() if resp.content_type == "application/json" else None

    async def set_faults(self, **sides: dict[str, float]) -> None:
        """E.g. set_faults(registry={"p_503": 1.0}); sides not named get no faults."""
        body = {"registry": {}, "preschool": {}} | sides
        await self._request("PUT", "/_sim/faults", body)

    async def dump(self, entry_year: int | None = None) -> list[dict[str, Any]]:
        """Every registration at the primary registry, with creation counts."""
        path = "/_sim/registry/dump" + (f"?entry_year={entry_year}" if entry_year else "")
        body = await self._request("GET", path)
        items: list[dict[str, Any]] = body["students"] if isinstance(body, dict) else body
        return items

    async def stats(self) -> dict[str, Any]:
        """Request counts by endpoint and status."""
        result: dict[str, Any] = await self._request("GET", "/_sim/stats")
        return result

    async def delete_student(self, number: str) -> None:
        """Make a registration vanish."""
        await self._request("DELETE", f"/_sim/registry/students/{number}")
