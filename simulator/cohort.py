"""Deterministic cohorts of preschool children: their events, seeds and expected outcomes.

For each child: its CloudEvents exactly per events.md, the preschool roster seed for
`POST /_sim/preschool/children`, and the registry state expected once the bridge has
applied the events in `childseq` order (see `fold_expected`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import random
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from simulator import names
from simulator.preschool_service import file_uri
from simulator.record_files import MEDIA_TYPE, build_record_file

TYPE_PREFIX = "cn.edu.preschool."
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8090"

# Scenario → its story: (event kind, phase of the year it happens in).
STORIES: dict[str, tuple[tuple[str, str], ...]] = {
    "graduated": (("graduated", "graduation"),),
    "graduated_no_school": (("graduated", "graduation"),),
    "deferred": (("deferred", "spring"),),
    "graduated_then_deferred": (("graduated", "graduation"), ("deferred", "summer")),
    "deferred_then_graduated": (("deferred", "spring"), ("graduated", "next_graduation")),
    "number_change_before_graduation": (("number_assigned", "spring"), ("graduated", "graduation")),
    "number_change_after_graduation": (("graduated", "graduation"), ("number_assigned", "summer")),
    "key_info_before_graduation": (("key_info_changed", "spring"), ("graduated", "graduation")),
    "key_info_after_graduation": (("graduated", "graduation"), ("key_info_changed", "summer")),
    "cancelled_before_graduation": (("cancelled", "spring"),),
    "cancelled_after_graduation": (("graduated", "graduation"), ("cancelled", "summer")),
    "bad_source_file": (("graduated", "graduation"),),
}
DEFAULT_MIX: Mapping[str, float] = {
    "graduated": 0.70,
    "graduated_no_school": 0.06,
    "deferred": 0.03,
    "graduated_then_deferred": 0.02,
    "deferred_then_graduated": 0.02,
    "number_change_before_graduation": 0.02,
    "number_change_after_graduation": 0.02,
    "key_info_before_graduation": 0.03,
    "key_info_after_graduation": 0.03,
    "cancelled_before_graduation": 0.02,
    "cancelled_after_graduation": 0.02,
    "bad_source_file": 0.03,
}
# Scenarios whose child starts with a temporary L number (id_type none).
_STARTS_TEMPORARY = ("number_change_before_graduation", "number_change_after_graduation")
_PHASES = {  # (month, day) windows, year offset from entry_year
    "spring": ((3, 1), (6, 10), 0),
    "graduation": ((6, 20), (7, 10), 0),
    "summer": ((7, 15), (8, 25), 0),
    "next_graduation": ((6, 20), (7, 10), 1),
}


@dataclass
class CohortChild:
    """One generated child: events, preschool seed and what the registry should end with."""

    scenario: str
    events: list[dict[str, Any]]
    roster: dict[str, Any]  # the preschool seed without the file's content
    record_file: bytes | None
    numbers: list[str]  # every number the child held, oldest first
    expected: dict[str, Any] | None  # registered state of the final number; None: none
    expected_outcome: str  # handed_over, deferred, cancelled, set_aside_bad_file

    @property
    def preschool(self) -> dict[str, Any]:
        """The item for `POST /_sim/preschool/children` (base64 built on demand: memory)."""
        if self.record_file is None:
            return {**self.roster, "file": None}
        content = base64.b64encode(self.record_file).decode()
        return {**self.roster, "file": {"content_base64": content, "media_type": MEDIA_TYPE}}

    @property
    def final_student_number(self) -> str:
        """The child's number after all its events."""
        return self.numbers[-1]


@dataclass
class Cohort:
    """A generated cohort for `entry_year`."""

    entry_year: int
    seed: int
    children: list[CohortChild] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        """Every child's events, child after child, each child's in childseq order."""
        return [event for child in self.children for event in child.events]

    def expected_registry(self) -> dict[str, dict[str, Any]]:
        """Final number → expected registered state, for the children handed over."""
        return {c.final_student_number: c.expected for c in self.children if c.expected}


def _scenario_list(rng: random.Random, size: int, mix: Mapping[str, float]) -> list[str]:
    unknown = set(mix) - set(STORIES)
    if unknown:
        raise ValueError(f"unknown scenarios: {sorted(unknown)}")
    total = sum(mix.values())
    counts = {s: int(size * w / total) for s, w in mix.items()}
    # Fill the rounding remainder with the most likely scenarios, deterministically.
    by_weight = sorted(mix, key=lambda s: (-mix[s], s))
    for i in range(size - sum(counts.values())):
        counts[by_weight[i % len(by_weight)]] += 1
    scenarios = [s for s in sorted(counts) for _ in range(counts[s])]
    rng.shuffle(scenarios)
    return scenarios


def _moment(
    rng: random.Random, entry_year: int, phase: str, after: dt.datetime | None
) -> dt.datetime:
    (m1, d1), (m2, d2), offset = _PHASES[phase]
    first = dt.date(entry_year + offset, m1, d1)
    last = dt.date(entry_year + offset, m2, d2)
    day = first + dt.timedelta(days=rng.randrange((last - first).days + 1))
    moment = dt.datetime(
        day.year, day.month, day.day, rng.randrange(8, 18), rng.randrange(60),
        rng.randrange(60), tzinfo=dt.timezone(dt.timedelta(hours=8)),
    )  # fmt: skip
    if after is not None and moment <= after:
        moment = after + dt.timedelta(hours=rng.randrange(1, 72))
    return moment


class _ChildBuilder:
    """Builds one child's story event by event, tracking its current record."""

    def __init__(self, gen: _Generator, scenario: str) -> None:
        rng = gen.rng
        self.gen, self.rng, self.scenario = gen, rng, scenario
        self.county = rng.choice(names.COUNTIES)
        self.kindergarten = f"11{self.county}{rng.randrange(1, 100):02d}"
        self.school = (
            None
            if scenario == "graduated_no_school"
            else f"21{self.county}{rng.randrange(1, 100):02d}"
        )
        self.gender = rng.choice("MF")
        self.birth = names.birth_date_for(rng, gen.entry_year)
        self.name = names.random_name(rng, self.gender)
        self.state = "in_kindergarten"
        self.entry_year = gen.entry_year
        self.childseq = rng.randrange(1, 6)  # earlier (unpublished) changes: enrolment etc.
        self.events: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = [
            {"on": f"{self.birth.year + 3}-09-01", "kind": "enrolment", "detail": "入园"}
        ]
        self.last_time: dt.datetime | None = None
        self.file: bytes | None = None
        self.claimed_sha256: str | None = None
        self.file_id: str | None = None
        self._pick_identity()

    def _pick_identity(self) -> None:
        roll = self.rng.random()
        if self.scenario in _STARTS_TEMPORARY or roll < self.gen.p_no_id:
            self.id_type, self.id_number, self.nationality = "none", None, "CN"
            self._unique_no_document_name()
            number = self.gen.unique(lambda: names.l_number(self.rng, self.county, self.birth))
        elif roll < self.gen.p_no_id + self.gen.p_foreign:
            self.id_type = self.rng.choice(("passport", "hk_macau_taiwan_permit"))
            self.id_number, self.nationality = self._unique_document()
            number = self.gen.unique(lambda: names.j_number(self.rng, self.county, self.birth))
        else:
            self.id_type, self.nationality = "resident_id", "CN"
            self.id_number = self._new_resident_id()
            number = "G" + self.id_number
        self.numbers = [number]

    def _unique_no_document_name(self) -> None:
        # Without a document the registry tells people apart by name+gender+birth date.
        while (self.name, self.gender, self.birth) in self.gen.no_document_keys:
            self.name = names.random_name(self.rng, self.gender)
        self.gen.no_document_keys.add((self.name, self.gender, self.birth))

    def _unique_document(self) -> tuple[str, str]:
        while True:
            doc, nationality = names.foreign_document(self.rng, self.id_type)
            if doc not in self.gen.taken:
                self.gen.taken.add(doc)
                return doc, nationality

    def _new_resident_id(self) -> str:
        return self.gen.unique(
            lambda: names.resident_id(self.rng, self.county, self.birth, self.gender)
        )

    @property
    def number(self) -> str:
        return self.numbers[-1]

    def child_data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "gender": self.gender,
            "birth_date": self.birth.isoformat(),
            "id_type": self.id_type,
            "id_number": self.id_number,
            "nationality": self.nationality,
        }

    def emit(self, kind: str, phase: str, data: dict[str, Any]) -> None:
        moment = _moment(self.rng, self.gen.entry_year, phase, self.last_time)
        self.last_time = moment
        self.childseq += self.rng.randrange(1, 4)
        self.events.append(
            {
                "specversion": "1.0",
                "id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                "source": f"/preschool/{self.county}/{self.kindergarten}",
                "type": TYPE_PREFIX + kind,
                "subject": self.number,
                "time": moment.isoformat(),
                "datacontenttype": "application/json",
                "childseq": self.childseq,
                "data": data,
            }
        )

    def step(self, kind: str, phase: str) -> None:
        getattr(self, "_" + kind)(phase)

    def _graduated(self, phase: str) -> None:
        year = self.gen.entry_year + (1 if phase == "next_graduation" else 0)
        self.entry_year = year
        on = _moment(self.rng, self.gen.entry_year, phase, self.last_time).date()
        self.history.append({"on": on.isoformat(), "kind": "graduation", "detail": "毕业"})
        self.file = build_record_file(
            self.rng,
            student_number=self.number,
            child=self.child_data(),
            kindergarten_code=self.kindergarten,
            history=self.history,
            target_size=self.rng.randrange(*self.gen.file_size_range),
        )
        self.file_id = uuid.UUID(int=self.rng.getrandbits(128), version=4).hex
        sha256 = hashlib.sha256(self.file).hexdigest()
        if self.scenario == "bad_source_file":
            self.claimed_sha256 = hashlib.sha256(self.rng.randbytes(16)).hexdigest()
        self.state = "graduated"
        self.emit(
            "child.graduated",
            phase,
            {
                "student_number": self.number,
                "child": self.child_data(),
                "kindergarten_code": self.kindergarten,
                "county_code": self.county,
                "graduated_on": on.isoformat(),
                "entry_year": year,
                "destination_school_code": self.school,
                "record_file": {
                    "uri": file_uri(self.gen.public_url, self.file_id),
                    "sha256": self.claimed_sha256 or sha256,
                    "size": len(self.file),
                    "media_type": MEDIA_TYPE,
                },
            },
        )

    def _deferred(self, phase: str) -> None:
        self.state = "deferred"
        self.emit(
            "child.deferred",
            phase,
            {
                "student_number": self.number,
                "entry_year": self.gen.entry_year,
                "deferred_until": f"{self.gen.entry_year + 1}-08-31",
                "approved_by_county_code": self.county,
                "reason": self.rng.choice(("health", "development", "other")),
                "kindergarten_code": self.kindergarten,
            },
        )
        self.history.append({"on": self.last_date(), "kind": "deferral", "detail": "缓学留园"})

    def _number_assigned(self, phase: str) -> None:
        previous = self.number
        self.id_type, self.nationality = "resident_id", "CN"
        self.id_number = self._new_resident_id()
        self.numbers.append("G" + self.id_number)
        self.emit(
            "child.number_assigned",
            phase,
            {
                "previous_student_number": previous,
                "student_number": self.number,
                "id_type": self.id_type,
                "id_number": self.id_number,
            },
        )
        self.history.append(
            {"on": self.last_date(), "kind": "number_change", "detail": "学籍号变更"}
        )

    def _key_info_changed(self, phase: str) -> None:
        self.name = names.other_given_name(self.rng, self.name, self.gender)
        self.emit(
            "child.key_info_changed",
            phase,
            {
                "student_number": self.number,
                "changes": {"name": self.name},
                "approved_by_county_code": self.county,
            },
        )
        self.history.append(
            {"on": self.last_date(), "kind": "key_info_change", "detail": "姓名更正"}
        )

    def _cancelled(self, phase: str) -> None:
        self.state = "cancelled"
        on = _moment(self.rng, self.gen.entry_year, phase, self.last_time).date()
        self.emit(
            "child.cancelled",
            phase,
            {
                "student_number": self.number,
                "reason": self.rng.choice(("deceased", "duplicate_record", "other")),
                "effective_on": on.isoformat(),
            },
        )

    def last_date(self) -> str:
        assert self.last_time is not None
        return self.last_time.date().isoformat()

    def build(self) -> CohortChild:
        for kind, phase in STORIES[self.scenario]:
            self.step(kind, phase)
        expected, outcome = fold_expected(self.events, file_ok=self.claimed_sha256 is None)
        roster: dict[str, Any] = {
            "student_number": self.number,
            "id_number": self.id_number,
            "state": self.state,
            "childseq": self.childseq,
            "kindergarten_code": self.kindergarten,
            "county_code": self.county,
            "entry_year": self.entry_year,
        }
        if self.file is not None:
            roster["file_id"] = self.file_id
            if self.claimed_sha256:
                roster["claimed_sha256"] = self.claimed_sha256
        return CohortChild(
            scenario=self.scenario,
            events=self.events,
            roster=roster,
            record_file=self.file,
            numbers=self.numbers,
            expected=expected,
            expected_outcome=outcome,
        )


@dataclass
class _Generator:
    rng: random.Random
    entry_year: int
    public_url: str
    p_no_id: float
    p_foreign: float
    file_size_range: tuple[int, int]
    taken: set[str] = field(default_factory=set)
    no_document_keys: set[tuple[str, str, dt.date]] = field(default_factory=set)

    def unique(self, make: Any) -> str:
        """Draw from `make` until the value was never handed out in this cohort."""
        while True:
            value: str = make()
            if value not in self.taken:
                self.taken.add(value)
                return value


def generate_cohort(
    entry_year: int,
    size: int,
    *,
    seed: int = 0,
    mix: Mapping[str, float] | None = None,
    p_no_id: float = 0.01,
    p_foreign: float = 0.02,
    file_size_range: tuple[int, int] = (5 * 1024 + 512, 50 * 1024 - 512),
    public_url: str = DEFAULT_PUBLIC_URL,
) -> Cohort:
    """Generate `size` children for `entry_year`, deterministically from `seed`.

    `p_no_id` and `p_foreign` apply to scenarios that do not force a temporary number;
    the number-change scenarios always start with an L number, so with the default mix
    about 3 % graduate with an L number (id_type none) and about 2 % with a J number.
    `public_url` only shapes the record-file URIs before seeding; `seed_cohort` replaces
    them with the simulator's answers.
    """
    gen = _Generator(
        rng=random.Random(seed),
        entry_year=entry_year,
        public_url=public_url.rstrip("/"),
        p_no_id=p_no_id,
        p_foreign=p_foreign,
        file_size_range=file_size_range,
    )
    cohort = Cohort(entry_year=entry_year, seed=seed)
    for scenario in _scenario_list(gen.rng, size, mix or DEFAULT_MIX):
        cohort.children.append(_ChildBuilder(gen, scenario).build())
    return cohort


def _sorted(events: Sequence[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for event in sorted(events, key=lambda e: e["childseq"]):
        yield event["type"].removeprefix(TYPE_PREFIX), event["data"]


def fold_expected(
    events: Sequence[dict[str, Any]], *, file_ok: bool = True
) -> tuple[dict[str, Any] | None, str]:
    """The registry state the contract implies after one child's events, in childseq order.

    Returns (expected registered state of the child's final number or None when the child
    must not be registered — absent or withdrawn —, expected outcome).
    """
    reg: dict[str, Any] | None = None
    outcome = "in_kindergarten"
    cancelled = False
    for kind, data in _sorted(events):
        if kind == "child.graduated":
            if cancelled:
                continue
            if not file_ok:
                outcome = "set_aside_bad_file"
                continue
            child = data["child"]
            reg = {
                "status": "registered",
                "student_number": data["student_number"],
                "entry_year": data["entry_year"],
                "name": child["name"],
                "gender": child["gender"],
                "birth_date": child["birth_date"],
                "id_type": child["id_type"],
                "id_number": child["id_number"],
                "kindergarten_code": data["kindergarten_code"],
                "school_code": data["destination_school_code"],
                "record_file_sha256": data["record_file"]["sha256"],
                "former_numbers": reg["former_numbers"] if reg else [],
            }
            outcome = "handed_over"
        elif kind == "child.deferred":
            if reg and reg["status"] == "registered" and reg["entry_year"] == data["entry_year"]:
                reg["status"] = "withdrawn"
            outcome = "deferred"
        elif kind == "child.number_assigned":
            if reg and reg["student_number"] == data["previous_student_number"]:
                reg["former_numbers"] = [*reg["former_numbers"], reg["student_number"]]
                reg.update(
                    student_number=data["student_number"],
                    id_type=data["id_type"],
                    id_number=data["id_number"],
                )
        elif kind == "child.key_info_changed":
            if reg and reg["student_number"] == data["student_number"]:
                reg.update(data["changes"])
        elif kind == "child.cancelled":
            cancelled = True
            if reg:
                reg["status"] = "withdrawn"
            outcome = "cancelled"
    return (reg if reg and reg["status"] == "registered" else None), outcome
