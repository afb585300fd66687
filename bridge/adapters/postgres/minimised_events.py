"""A child's stored events with their personal fields erased, and reading either form back.

After retention (bridge.domain.retention) each stored event body is replaced by a minimised
one: the envelope (id, type, subject, time, childseq, source), the data's numbers, codes,
dates and digests, and a sha256 of the body it replaces; names, identity numbers, birth
dates, genders, nationalities, a deferral's reason, a correction's values and the file's
address are gone. Folded, minimised events give the same hand-over state, marked erased,
so that nothing needing the person's data is ever done again (Handoff.next_action).

A minimised body starts with a NUL byte: no message the consumer accepted (JSON) can, so
the two forms can never be taken for each other.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import orjson

from bridge.domain import events as domain
from schemas.events import TYPE_PREFIX, parse_event

MINIMISED = b"\x00xueji-minimised-v1\n"

# What stays of each event's data: numbers, codes, dates, digests; never the person.
_KEPT: dict[str, tuple[str, ...]] = {
    domain.EventType.GRADUATED: (
        "student_number", "kindergarten_code", "county_code", "graduated_on", "entry_year",
        "destination_school_code",
    ),
    domain.EventType.DEFERRED: (
        "student_number", "entry_year", "deferred_until", "approved_by_county_code",
        "kindergarten_code",
    ),
    domain.EventType.NUMBER_ASSIGNED: ("previous_student_number", "student_number", "id_type"),
    domain.EventType.KEY_INFO_CHANGED: ("student_number", "approved_by_county_code"),
    domain.EventType.CANCELLED: ("student_number", "reason", "effective_on"),
}  # fmt: skip
_ENVELOPE = ("id", "type", "subject", "time", "childseq", "source")


def is_minimised(body: bytes) -> bool:
    """True for a body minimise() wrote."""
    return body.startswith(MINIMISED)


def minimise(body: bytes, *, at: dt.datetime) -> bytes:
    """The minimised form of a stored event body (a minimised one is returned as it is)."""
    if is_minimised(body):
        return body
    raw: dict[str, Any] = orjson.loads(body)
    kind = domain.EventType(str(raw["type"]).removeprefix(TYPE_PREFIX))
    data: dict[str, Any] = raw.get("data") or {}
    kept: dict[str, Any] = {k: data.get(k) for k in _KEPT[kind]}
    if kind is domain.EventType.GRADUATED:
        claim = data.get("record_file") or {}
        kept["record_file"] = {k: claim.get(k) for k in ("sha256", "size", "media_type")}
    if kind is domain.EventType.KEY_INFO_CHANGED:
        kept["changed"] = sorted((data.get("changes") or {}).keys())  # which, not to what
    out: dict[str, Any] = {k: raw.get(k) for k in _ENVELOPE}
    out |= {
        "data": kept,
        "minimised_at": at.isoformat(),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    return MINIMISED + orjson.dumps(out)


def parse_minimised(body: bytes) -> domain.ChildEvent:
    """The domain event of a minimised body, marked erased."""
    raw: dict[str, Any] = orjson.loads(body[len(MINIMISED) :])
    kind = domain.EventType(str(raw["type"]).removeprefix(TYPE_PREFIX))
    d: dict[str, Any] = raw["data"]
    date = dt.date.fromisoformat
    data: domain.EventData
    if kind is domain.EventType.GRADUATED:
        f = d["record_file"]
        data = domain.Graduated(
            student_number=d["student_number"], child=domain.ERASED_CHILD,
            kindergarten_code=d["kindergarten_code"], county_code=d["county_code"],
            graduated_on=date(d["graduated_on"]), entry_year=d["entry_year"],
            destination_school_code=d["destination_school_code"],
            record_file=domain.RecordFileClaim("", f["sha256"], f["size"], f["media_type"]),
        )  # fmt: skip
    elif kind is domain.EventType.DEFERRED:
        data = domain.Deferred(
            student_number=d["student_number"], entry_year=d["entry_year"],
            deferred_until=date(d["deferred_until"]),
            approved_by_county_code=d["approved_by_county_code"], reason=domain.ERASED,
            kindergarten_code=d["kindergarten_code"],
        )  # fmt: skip
    elif kind is domain.EventType.NUMBER_ASSIGNED:
        data = domain.NumberAssigned(
            previous_student_number=d["previous_student_number"],
            student_number=d["student_number"], id_type=d["id_type"], id_number=None,
        )  # fmt: skip
    elif kind is domain.EventType.KEY_INFO_CHANGED:
        data = domain.KeyInfoChanged(
            student_number=d["student_number"], changes={},
            approved_by_county_code=d["approved_by_county_code"],
        )  # fmt: skip
    else:
        data = domain.Cancelled(
            student_number=d["student_number"], reason=d["reason"],
            effective_on=date(d["effective_on"]),
        )  # fmt: skip
    return domain.ChildEvent(
        event_id=str(raw["id"]), childseq=int(raw["childseq"]), type=kind,
        subject=str(raw["subject"]), time=dt.datetime.fromisoformat(raw["time"]), data=data,
        erased=True,
    )  # fmt: skip


def parse_stored(body: bytes) -> domain.ChildEvent:
    """A stored event body, whole (as received) or minimised."""
    return parse_minimised(body) if is_minimised(body) else parse_event(body)
