"""Hand-written wire events of one child, for tests that need exact childseqs and numbers."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from bridge.domain.events import ChildEvent
from schemas.events import parse_event

L = "L110108202001091537"
G = "G110108202001097076"
CHILD = {
    "name": "刘帆晨",
    "gender": "M",
    "birth_date": "2020-01-09",
    "id_type": "none",
    "id_number": None,
    "nationality": "CN",
}
SHA = "7e030c9f45afff9f3b3d8ee137e5c8a0ff7b6921d4f65e2c68288d64d5760aa6"


def _wire(kind: str, subject: str, seq: int, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/preschool/110108/1111010873",
        "type": f"cn.edu.preschool.child.{kind}",
        "subject": subject,
        "time": "2026-07-16T08:17:03+08:00",
        "datacontenttype": "application/json",
        "childseq": seq,
        "data": data,
    }


def graduated(number: str, seq: int, child: dict[str, Any] | None = None) -> dict[str, Any]:
    return _wire(
        "graduated",
        number,
        seq,
        {
            "student_number": number,
            "child": child or CHILD,
            "kindergarten_code": "1111010873",
            "county_code": "110108",
            "graduated_on": "2026-07-05",
            "entry_year": 2026,
            "destination_school_code": "2111010898",
            "record_file": {
                "uri": "http://127.0.0.1:8090/preschool/v1/record-files/x/content",
                "sha256": SHA,
                "size": 31174,
                "media_type": "application/json",
            },
        },
    )


def number_assigned(old: str, new: str, seq: int) -> dict[str, Any]:
    return _wire(
        "number_assigned",
        new,
        seq,
        {
            "previous_student_number": old,
            "student_number": new,
            "id_type": "resident_id",
            "id_number": new[1:],
        },
    )


def key_info(number: str, seq: int, name: str = "刘晨") -> dict[str, Any]:
    return _wire(
        "key_info_changed",
        number,
        seq,
        {"student_number": number, "changes": {"name": name}, "approved_by_county_code": "110108"},
    )


def cancelled(number: str, seq: int) -> dict[str, Any]:
    return _wire(
        "cancelled",
        number,
        seq,
        {"student_number": number, "reason": "duplicate_record", "effective_on": "2026-08-18"},
    )


def ev(wire: dict[str, Any]) -> tuple[ChildEvent, bytes]:
    raw = orjson.dumps(wire)
    return parse_event(raw), raw


def deferred(number: str, seq: int, until: str = "2027-08-31") -> dict[str, Any]:
    return _wire(
        "deferred",
        number,
        seq,
        {
            "student_number": number,
            "entry_year": 2026,
            "deferred_until": until,
            "approved_by_county_code": "110108",
            "reason": "health",
            "kindergarten_code": "1111010873",
        },
    )
