"""Checking a record file's bytes against its claim check."""

from __future__ import annotations

import hashlib

from bridge.domain.events import RecordFileClaim
from bridge.errors import BadSourceFile


def verify_record_file(claim: RecordFileClaim, content: bytes) -> None:
    """Raise BadSourceFile unless *content* has exactly the claimed size and sha256."""
    if len(content) != claim.size:
        raise BadSourceFile(
            "record file size differs from its claim",
            claimed_size=str(claim.size),
            actual_size=str(len(content)),
        )
    actual = hashlib.sha256(content).hexdigest()
    if actual != claim.sha256:
        raise BadSourceFile(
            "record file sha256 differs from its claim",
            claimed_sha256=claim.sha256,
            actual_sha256=actual,
        )
