"""Wire models of the preschool registry's CloudEvents (events.md), and their domain form.

``parse_event`` reads one event in JSON structured mode: the form a message body takes in
structured mode, and the form the ledger stores every event in (see ``schemas.amqp_binding``
for binary mode). It accepts what the contract's Compatibility section allows: ``data`` or
``data_base64``, ``datacontenttype`` absent or any spelling of ``application/json`` in
UTF-8, extension attributes and fields the contract does not define (ignored here; the
stored body keeps them).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from bridge.domain import events as domain
from bridge.domain.student_number import validate_resident_id
from bridge.errors import InvalidEvent
from schemas import strict_json
from schemas.codes import CountyCode, SchoolCode, Sha256Hex, StudentNumberStr
from schemas.media_type import MediaTypeRefused, parse_media_type
from schemas.query import an_instant

TYPE_PREFIX = "cn.edu.preschool."
JSON_MEDIA_TYPE = "application/json"
# CloudEvents Integer: a signed 32-bit whole number (and childseq counts from 1).
INT32_MAX = 2**31 - 1
# I-JSON: integers beyond 2^53 - 1 are not exact in every reader.
IJSON_INT_MAX = 2**53 - 1
_CONTROL = re.compile("[\x00-\x1f\x7f]")
Gender = Literal["M", "F"]
IdType = Literal["resident_id", "hk_macau_taiwan_permit", "passport", "none"]
EntryYearInt = Annotated[int, Field(strict=True, ge=2000, le=2100)]


def _text(value: Any) -> Any:
    # From JSON a date is a string; built in Python (schemas/registry.py), a date.
    if not isinstance(value, str | dt.date):
        raise ValueError("must be a string")
    return value


# Dates and times are JSON strings (RFC 3339 / ISO 8601), never numbers read as epochs.
IsoDate = Annotated[dt.date, BeforeValidator(_text)]
IsoTime = Annotated[AwareDatetime, BeforeValidator(_text), AfterValidator(an_instant)]


class _Strict(BaseModel):
    # Fields the contract does not define are ignored (a publisher may add optional ones);
    # the stored body keeps them.
    model_config = ConfigDict(extra="ignore", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        if isinstance(value, str) and _CONTROL.search(value):
            raise ValueError("holds a control character (U+0000-U+001F or U+007F)")
        return value


class ChildIn(_Strict):
    """The child as the graduated event describes it."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
    gender: Gender
    birth_date: IsoDate
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
    size: Annotated[int, Field(strict=True, ge=0, le=IJSON_INT_MAX)]
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
    graduated_on: IsoDate
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
    deferred_until: IsoDate
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
    birth_date: IsoDate | None = None

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
    effective_on: IsoDate

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


class CloudEvent(_Strict):
    """The envelope's attributes as events.md fixes them (data is read apart)."""

    specversion: Literal["1.0"]
    id: uuid.UUID
    source: Annotated[str, StringConstraints(pattern=SOURCE_PATTERN)]
    type: Literal[tuple(DATA_MODELS)]  # type: ignore[valid-type]
    subject: StudentNumberStr
    time: IsoTime
    childseq: Annotated[int, Field(strict=True, ge=1, le=INT32_MAX)]


def _reason(exc: ValidationError, prefix: str = "") -> str:
    # Field paths and messages only: pydantic's input echo could carry a name or ID.
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:5]:
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        parts.append(f"{loc or 'body'}: {err['msg']}")
    return "; ".join(parts)


def json_body(raw: bytes, what: str) -> Any:
    """*raw* as I-JSON, or InvalidEvent(not_json) saying what was wrong with *what*."""
    try:
        return strict_json.loads(raw)
    except strict_json.JsonRefused as exc:
        raise InvalidEvent(f"{what}: {exc}", code="not_json") from None


def check_json_media_type(value: Any, what: str, *, essence: str = JSON_MEDIA_TYPE) -> None:
    """*value* names *essence* (any letter case, parameters allowed) in UTF-8, if anything."""
    if not isinstance(value, str):
        raise InvalidEvent(f"{what}: must be a string", code="invalid_envelope")
    try:
        media = parse_media_type(value)
    except MediaTypeRefused as exc:
        raise InvalidEvent(f"{what} {exc}", code="content_type") from None
    if media.essence != essence:
        raise InvalidEvent(f"{what} must be {essence}", code="content_type")
    if media.charset not in (None, "utf-8"):
        raise InvalidEvent(
            f"{what} names a charset other than UTF-8, the only one accepted", code="content_type"
        )


def parse_event(body: bytes) -> domain.ChildEvent:
    """Decode one structured-mode body into a domain event, or raise InvalidEvent.

    The error's code groups refusals for operators: not_json, invalid_envelope,
    unknown_type, invalid_data, subject_mismatch, content_type.
    """
    raw = json_body(body, "body")
    if not isinstance(raw, dict):
        raise InvalidEvent("body is not a JSON object", code="invalid_envelope")
    return event_from_structured(raw)


def event_from_structured(raw: Mapping[str, Any]) -> domain.ChildEvent:
    """The event of a JSON structured-mode envelope (already parsed)."""
    # An attribute whose value is null is unset (CloudEvents JSON format, 2.2); data is
    # not an attribute: null data is an explicit null payload.
    attributes = {k: v for k, v in raw.items() if v is not None or k == "data"}
    envelope = envelope_of(attributes)
    if "datacontenttype" in attributes:
        check_json_media_type(attributes["datacontenttype"], "datacontenttype")
    if "data" in attributes and "data_base64" in attributes:
        raise InvalidEvent("data and data_base64 are both present", code="invalid_envelope")
    if "data_base64" in attributes:
        encoded = attributes["data_base64"]
        if not isinstance(encoded, str):
            raise InvalidEvent("data_base64: must be a string", code="invalid_envelope")
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidEvent("data_base64: is not base64", code="invalid_envelope") from None
        data = json_body(decoded, "data_base64")
    elif "data" in attributes:
        data = attributes["data"]
    else:
        raise InvalidEvent("data: required (or data_base64)", code="invalid_envelope")
    return event_of(envelope, data)


def envelope_of(attributes: Mapping[str, Any]) -> CloudEvent:
    """The envelope's attributes, checked (either content mode)."""
    if isinstance(attributes.get("type"), str) and attributes["type"] not in DATA_MODELS:
        raise InvalidEvent("type: not an event type of events.md", code="unknown_type")
    try:
        return CloudEvent.model_validate(attributes)
    except ValidationError as exc:
        raise InvalidEvent(_reason(exc), code="invalid_envelope") from None


def event_of(envelope: CloudEvent, data: Any) -> domain.ChildEvent:
    """The event of a checked *envelope* and its *data* (JSON), in either content mode."""
    if not isinstance(data, dict):
        raise InvalidEvent("data: is not a JSON object", code="invalid_data")
    model = DATA_MODELS[envelope.type]
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise InvalidEvent(_reason(exc, "data"), code="invalid_data") from None
    domain_data = parsed.to_domain()  # type: ignore[attr-defined]
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
