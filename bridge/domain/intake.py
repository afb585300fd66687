"""What the bridge hands over to the primary registry for a graduated child."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from dataclasses import dataclass

from bridge.domain.child_record import ChildRecord, RecordStatus
from bridge.domain.events import ERASED_CHILD, Child
from bridge.domain.intake_fields import KEY_INFO_FIELDS


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """Name, gender and birth date: what only a county-approved correction changes."""

    name: str
    gender: str
    birth_date: dt.date

    @classmethod
    def of(cls, child: Child) -> KeyInfo:
        """The key information of *child*."""
        return cls(name=child.name, gender=child.gender, birth_date=child.birth_date)

    def changes_to(self, other: KeyInfo) -> dict[str, str | dt.date]:
        """The fields that differ, with *other*'s values."""
        return {
            f: getattr(other, f) for f in KEY_INFO_FIELDS if getattr(self, f) != getattr(other, f)
        }


# What a registration's key information becomes once the child's data is erased.
ERASED_KEY_INFO = KeyInfo.of(ERASED_CHILD)


@dataclass(frozen=True, slots=True)
class IntakeRequest:
    """The body of B1 for one child and one entry year."""

    student_number: str
    entry_year: int
    child: Child
    kindergarten_code: str
    graduated_on: dt.date
    requested_school_code: str | None
    file_sha256: str
    file_size: int
    file_media_type: str

    @classmethod
    def for_record(cls, record: ChildRecord) -> IntakeRequest:
        """The intake a graduated child's record calls for."""
        graduation = record.graduation
        if record.status is not RecordStatus.GRADUATED or graduation is None or not record.child:
            raise ValueError("only a graduated child is handed over")
        claim = graduation.record_file
        return cls(
            student_number=record.student_number,
            entry_year=graduation.entry_year,
            child=record.child,
            kindergarten_code=graduation.kindergarten_code,
            graduated_on=graduation.graduated_on,
            requested_school_code=graduation.destination_school_code,
            file_sha256=claim.sha256,
            file_size=claim.size,
            file_media_type=claim.media_type,
        )

    @property
    def key_info(self) -> KeyInfo:
        """The key information this intake carries."""
        return KeyInfo.of(self.child)

    def _digest(self, *, with_key_info: bool) -> str:
        return _digest(self, with_key_info)

    def _canonical_digest(self, with_key_info: bool) -> str:
        child = {
            "id_type": self.child.id_type,
            "id_number": self.child.id_number,
            "nationality": self.child.nationality,
        }
        if with_key_info:
            child |= {f: str(getattr(self.child, f)) for f in KEY_INFO_FIELDS}
        canonical = {
            "student_number": self.student_number,
            "entry_year": self.entry_year,
            "child": child,
            "kindergarten_code": self.kindergarten_code,
            "graduated_on": self.graduated_on.isoformat(),
            "requested_school_code": self.requested_school_code,
            "record_file": [self.file_sha256, self.file_size, self.file_media_type],
        }
        blob = json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()

    def idempotency_key(self, generation: int) -> str:
        """Derived from the body, so every attempt (any instance, any restart) reuses it.

        *generation* counts how often this child's registration was withdrawn or found
        missing: registering it again is a new hand-over and must not replay the old answer.
        """
        return f"xueji-{self._digest(with_key_info=True)[:40]}-{generation}"

    @property
    def terms(self) -> str:
        """Fingerprint of everything but key information (which B5 corrects in place)."""
        return self._digest(with_key_info=False)


# Deciding a child's next step asks for the same intake's digests several times over;
# the intake is immutable, so each is computed once while the child is being worked on.
@functools.lru_cache(maxsize=4096)
def _digest(intake: IntakeRequest, with_key_info: bool) -> str:
    return intake._canonical_digest(with_key_info)
