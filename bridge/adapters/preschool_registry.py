"""Client of the preschool registry (registry-api.md section A)."""

from __future__ import annotations

from bridge.adapters.http_transport import Answer, RegistryTransport, fetch_page
from bridge.domain.events import RecordFileClaim
from bridge.domain.record_file import verify_record_file
from bridge.errors import RegistryRejected, SourceFileMissing
from schemas.registry import ROSTER_PAGE, RosterPage


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
            raise _unexpected("fetch_file", answer)
        verify_record_file(claim, answer.body)
        return answer.body

    async def roster_page(self, entry_year: int, cursor: str | None, limit: int) -> RosterPage:
        """A2: one page of a cohort's roster (RegistryRejected if it breaks the contract)."""
        path = f"/v1/cohorts/{entry_year}/roster"
        return await fetch_page(self._t, "roster", path, cursor, limit, ROSTER_PAGE, _unexpected)


def _unexpected(operation: str, answer: Answer) -> RegistryRejected:
    return RegistryRejected(f"{operation}: unexpected HTTP {answer.status}")
