"""Client of the preschool registry (registry-api.md section A)."""

from __future__ import annotations

from typing import Any

from bridge.adapters.http_transport import RegistryTransport
from bridge.domain.events import RecordFileClaim
from bridge.domain.record_file import verify_record_file
from bridge.errors import RegistryRejected, SourceFileMissing
from schemas.registry import ROSTER_PAGE, RosterPage, parse_page


class PreschoolRegistry:
    """A1 (record files by claim check) and A2 (graduate roster)."""

    def __init__(self, transport: RegistryTransport) -> None:
        self._t = transport

    async def fetch_record_file(self, claim: RecordFileClaim) -> bytes:
        """A1: the file's bytes, verified against the claim (BadSourceFile if they differ)."""
        answer = await self._t.call("fetch_file", "GET", claim.uri, raw=True)
        if answer.status == 404:
            raise SourceFileMissing("the preschool registry does not know this record file")
        if answer.status != 200 or not isinstance(answer.body, bytes):
            raise RegistryRejected(f"fetch_file: unexpected HTTP {answer.status}")
        verify_record_file(claim, answer.body)
        return answer.body

    async def roster_page(self, entry_year: int, cursor: str | None, limit: int) -> RosterPage:
        """A2: one page of a cohort's roster (RegistryRejected if it breaks the contract)."""
        params: dict[str, Any] = {"limit": str(limit)}
        if cursor:
            params["cursor"] = cursor
        answer = await self._t.call(
            "roster", "GET", f"/v1/cohorts/{entry_year}/roster", params=params, raw=True
        )
        if answer.status != 200 or not isinstance(answer.body, bytes):
            raise RegistryRejected(f"roster: unexpected HTTP {answer.status}")
        # Validated from the raw bytes: no dict per child in between.
        return parse_page(ROSTER_PAGE, "roster", answer.body)
