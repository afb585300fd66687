"""The Handoff aggregate to and from the ledger's jsonb column."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bridge.domain.arrival import Arrival
from bridge.domain.handoff import Handoff, Registration, SetAside, SetAsideReason
from bridge.domain.intake import ERASED_KEY_INFO, KeyInfo


def _key_info_out(k: KeyInfo) -> dict[str, str] | None:
    if k == ERASED_KEY_INFO:  # erased after retention: null, not placeholders
        return None
    return {"name": k.name, "gender": k.gender, "birth_date": k.birth_date.isoformat()}


def _key_info_in(d: dict[str, str] | None) -> KeyInfo:
    if d is None:
        return ERASED_KEY_INFO
    return KeyInfo(d["name"], d["gender"], dt.date.fromisoformat(d["birth_date"]))


def dump_handoff(h: Handoff) -> dict[str, Any]:
    """JSON-ready form of *h*."""
    return {
        "registrations": [
            {
                "student_number": r.student_number,
                "entry_year": r.entry_year,
                "terms": r.terms,
                "key_info": _key_info_out(r.key_info),
                "school_code": r.school_code,
                "file_sha256": r.file_sha256,
                "enrolled": r.enrolled,
                "confirmed": r.confirmed,
            }
            for r in h.registrations
        ],
        "verified_file_sha256": h.verified_file_sha256,
        "set_aside": None
        if h.set_aside is None
        else {
            "reason": h.set_aside.reason.value,
            "detail": h.set_aside.detail,
            "at_childseq": h.set_aside.at_childseq,
        },
        "arrival": None
        if h.arrival is None
        else {"school_code": h.arrival.school_code, "arrived_on": h.arrival.arrived_on.isoformat()},
        "generation": h.generation,
    }


def load_arrival(d: dict[str, str] | None) -> Arrival | None:
    """The arrival part of a dumped hand-over (None when no school reported one)."""
    if not d:
        return None
    return Arrival(d["school_code"], dt.date.fromisoformat(d["arrived_on"]))


def load_handoff(d: dict[str, Any]) -> Handoff:
    """Inverse of dump_handoff; an empty dict is a fresh hand-over."""
    if not d:
        return Handoff()
    aside = d.get("set_aside")
    arrival = d.get("arrival")
    return Handoff(
        registrations=tuple(
            Registration(
                student_number=r["student_number"],
                entry_year=r["entry_year"],
                terms=r["terms"],
                key_info=_key_info_in(r["key_info"]),
                school_code=r["school_code"],
                file_sha256=r["file_sha256"],
                enrolled=r["enrolled"],
                confirmed=r.get("confirmed", True),
            )
            for r in d.get("registrations", [])
        ),
        verified_file_sha256=d.get("verified_file_sha256"),
        set_aside=None
        if not aside
        else SetAside(SetAsideReason(aside["reason"]), aside["detail"], aside["at_childseq"]),
        arrival=load_arrival(arrival),
        generation=d.get("generation", 0),
    )
