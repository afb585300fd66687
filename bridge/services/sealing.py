"""Sealing accounts unused for 180 days (rules.md: 半年以上未使用的账号应予以封存), audited."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from bridge.services.ports.access import Audit, TokenAccounts

log = logging.getLogger(__name__)

# Hourly is plenty: authentication seals an overdue token itself, so the job only makes
# the seal visible in listings and the audit log before anyone tries the token.
SEAL_INTERVAL_S = 3600.0
SEALER = "system:sealer"


async def seal_unused_tokens(
    tokens: TokenAccounts, audit: Audit, *, actor: str = SEALER, now: dt.datetime | None = None
) -> list[str]:
    """Seal every token unused for 180 days; one audit entry per token sealed."""
    sealed = await tokens.seal_unused(now)
    for token_id in sealed:
        await audit.record(
            action="token.seal", outcome="sealed", actor=actor, target_token=token_id,
            detail={"reason": "unused for 180 days"},
        )  # fmt: skip
    if sealed:
        log.info("sealed %d tokens unused for 180 days", len(sealed))
    return sealed


async def run_sealing(
    tokens: TokenAccounts, audit: Audit, *, interval_s: float = SEAL_INTERVAL_S
) -> None:
    """Seal overdue tokens now and then every *interval_s*, until cancelled."""
    while True:
        try:
            await seal_unused_tokens(tokens, audit)
        except Exception as exc:  # the database may be away; the next round tries again
            log.warning("token sealing failed: %s", type(exc).__name__)
        await asyncio.sleep(interval_s)
