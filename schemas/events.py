"""Wire models of the preschool registry's CloudEvents (events.md), and their domain form."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from bridge.domain import events as domain
from bridge.domain.student_number import validate_resident_id
from bridge.errors import InvalidEvent
from schemas.codes import CountyCode, SchoolCode, Sha256Hex, StudentNumberStr

TYPE_PREFIX = "cn.edu.preschool."
Gender = Literal["M", "F"]
IdType = Literal["resident_id", "hk_macau_taiwan_permit", "passport", "none"]
EntryYearInt = Annotated[int, Field(ge=2000, le=2100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChildIn(_Strict):
    """The child as the graduated event describes it."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
    gender: Gender
    birth_date: dt.date
    id_type: IdType
    id_number: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None
    nationality: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2,3}$")]

    @model_validator(mode="after")
    def _id_matches_type(self) -> ChildIn:
        if self.id_type == "none":
            if self.id_number is not None:
                raise ValueError("id_number must be null when id_type is none")
        elif self.id_number is None:
            raise ValueError("id_number is required unless id_type is none")
        if self.id_type == "resident_id" and self.id_number is not None:
            validate_resident_id(self.id_number)
        return self

    def to_domain(self) -> domain.Child:
        """The domain's view."""
        return domain.Child(**self.model_dump())


class RecordFileIn(_Strict):
    """Claim check of the record file."""

    uri: Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2000)]
    sha256: Sha256Hex
    size: Annotated[int, Field(ge=0)]
    media_type: Annotated[str, StringConstraints(pattern=r"^[\w.+-]+/[\w.+-]+$")]

    def to_domain(self) -> domain.RecordFileClaim:
        """The domain's view."""
        return domain.RecordFileClaim(**self.model_dump())


class GraduatedData(_Strict):
    """Data of ``child.graduated``."""

    student_number: StudentNumberStr
    child: ChildIn
    kindergarten_code: SchoolCode
    county_code: CountyCode
    graduated_on: dt.date
    entry_year: EntryYearInt
    destination_school_code: SchoolCode | None
    record_file: RecordFileIn

    @model_validator(mode="after")
    def _number_matches_identity(self) -> GraduatedData:
        if (
            self.student_number.startswith("G")
            and self.child.id_type == "resident_id"
            and self.student_number[1:] != self.child.id_number
        ):
            raise ValueError("a G number must be G + the child's resident ID number")
        return self

    def to_domain(self) -> domain.Graduated:
        """The domain's view."""
        return domain.Graduated(
            student_number=self.student_number,
            child=self.child.to_domain(),
            kindergarten_code=self.kindergarten_code,
            county_code=self.county_code,
            graduated_on=self.graduated_on,
            entry_year=self.entry_year,
            destination_school_code=self.destination_school_code,
            record_file=self.record_file.to_domain(),
        )


class DeferredData(_Strict):
    """Data of ``child.deferred``."""

    student_number: StudentNumberStr
    entry_year: EntryYearInt
    deferred_until: dt.date
    approved_by_county_code: CountyCode
    reason: Literal["health", "development", "other"]
    kindergarten_code: SchoolCode

    def to_domain(self) -> domain.Deferred:
        """The domain's view."""
        return domain.Deferred(**self.model_dump())


class NumberAssignedData(_Strict):
    """Data of ``child.number_assigned``."""

    previous_student_number: StudentNumberStr
    student_number: StudentNumberStr
    id_type: IdType
    id_number: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None

    @model_validator(mode="after")
    def _formal_g_number(self) -> NumberAssignedData:
        if not self.student_number.startswith("G"):
            raise ValueError("the new number of number_assigned is a formal G number")
        if self.previous_student_number[0] not in "LJ":
            raise ValueError("number_assigned replaces a temporary L or a J number")
        if self.id_type == "resident_id" and self.id_number != self.student_number[1:]:
            raise ValueError("a G number must be G + the child's resident ID number")
        return self

    def to_domain(self) -> domain.NumberAssigned:
        """The domain's view."""
        return domain.NumberAssigned(**self.model_dump())


class KeyInfoChanges(_Strict):
    """The corrected key information: one or more of name, gender, birth date."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    gender: Gender | None = None
    birth_date: dt.date | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> KeyInfoChanges:
        if not self.model_fields_set:
            raise ValueError("changes must hold at least one of name, gender, birth_date")
        if any(getattr(self, f) is None for f in self.model_fields_set):
            raise ValueError("a changed field cannot be null")
        return self


class KeyInfoChangedData(_Strict):
    """Data of ``child.key_info_changed``."""

    student_number: StudentNumberStr
    changes: KeyInfoChanges
    approved_by_county_code: CountyCode

    def to_domain(self) -> domain.KeyInfoChanged:
        """The domain's view."""
        changes = self.changes.model_dump(exclude_unset=True)
        return domain.KeyInfoChanged(
            student_number=self.student_number,
            changes=changes,
            approved_by_county_code=self.approved_by_county_code,
        )


class CancelledData(_Strict):
    """Data of ``child.cancelled``."""

    student_number: StudentNumberStr
    reason: Literal["deceased", "duplicate_record", "other"]
    effective_on: dt.date

    def to_domain(self) -> domain.Cancelled:
        """The domain's view."""
        return domain.Cancelled(**self.model_dump())


DATA_MODELS: dict[str, type[_Strict]] = {
    TYPE_PREFIX + domain.EventType.GRADUATED: GraduatedData,
    TYPE_PREFIX + domain.EventType.DEFERRED: DeferredData,
    TYPE_PREFIX + domain.EventType.NUMBER_ASSIGNED: NumberAssignedData,
    TYPE_PREFIX + domain.EventType.KEY_INFO_CHANGED: KeyInfoChangedData,
    TYPE_PREFIX + domain.EventType.CANCELLED: CancelledData,
}
SOURCE_PATTERN = r"^/preschool/\d{6}/\d{10}$"


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope in JSON structured mode, as events.md fixes it."""

    # Unknown extension attributes are allowed by CloudEvents; we ignore them.
    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: Literal["1.0"]
    id: uuid.UUID
    source: Annotated[str, StringConstraints(pattern=SOURCE_PATTERN)]
    type: Literal[tuple(DATA_MODELS)]  # type: ignore[valid-type]
    subject: StudentNumberStr
    time: AwareDatetime
    datacontenttype: Literal["application/json"]
    childseq: Annotated[int, Field(ge=1, strict=True)]
    data: dict[str, Any]


def _reason(exc: ValidationError, prefix: str = "") -> str:
    # Field paths and messages only: pydantic's input echo could carry a name or ID.
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:5]:
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        parts.append(f"{loc or 'body'}: {err['msg']}")
    return "; ".join(parts)


def parse_event(body: bytes) -> domain.ChildEvent:
    """Decode one message body into a domain event, or raise InvalidEvent with the reason.

    The error's code groups refusals for operators: not_json, invalid_envelope,
    unknown_type, invalid_data, subject_mismatch.
    """
    try:
        raw = orjson.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidEvent("body is not UTF-8 JSON", code="not_json") from None
    if not isinstance(raw, dict):
        raise InvalidEvent("body is not a JSON object", code="invalid_envelope")
    if isinstance(raw.get("type"), str) and raw["type"] not in DATA_MODELS:
        raise InvalidEvent("type: not an event type of events.md", code="unknown_type")
    try:
        envelope = CloudEvent.model_validate(raw)
    except ValidationError as exc:
        raise InvalidEvent(_reason(exc), code="invalid_envelope") from None
    model = DATA_MODELS[envelope.type]
    try:
        data = model.model_validate(envelope.data)
    except ValidationError as exc:
        raise InvalidEvent(_reason(exc, "data"), code="invalid_data") from None
    domain_data = data.to_domain()  # type: ignore[attr-defined]
    names = {domain_data.student_number}
    if isinstance(domain_data, domain.NumberAssigned):
        names.add(domain_data.previous_student_number)
    if envelope.subject not in names:
        raise InvalidEvent(
            "subject: is not the student number the data names", code="subject_mismatch"
        )
    return domain.ChildEvent(
        event_id=str(envelope.id),
        childseq=envelope.childseq,
        type=domain.EventType(envelope.type.removeprefix(TYPE_PREFIX)),
        subject=envelope.subject,
        time=envelope.time,
        data=domain_data,
    )
