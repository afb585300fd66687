"""The CloudEvents AMQP binding as events.md's Compatibility section accepts it.

A message is one event in one of two content modes:

- structured: ``content_type`` is ``application/cloudevents+json`` (any letter case, UTF-8
  if a charset is named) and the body is the whole event;
- binary: the attributes are headers prefixed ``cloudEvents_`` (``cloudEvents:`` in older
  SDKs, ``ce-`` in the official SDK's RabbitMQ binding), ``content_type`` is the data's
  media type and the body is the data alone.

A message with neither a CloudEvents content type nor attribute headers is read as
structured mode when its content type is absent or ``application/json``, as the bridge
always has. Whatever the mode, the event is stored in JSON structured mode (``stored``): the
body as it arrived, or for binary mode the attributes with the body as ``data_base64``, so
that the ledger keeps every byte of the data and every extension that arrived.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from bridge.domain.events import ChildEvent
from bridge.errors import InvalidEvent
from schemas.events import (
    JSON_MEDIA_TYPE,
    check_json_media_type,
    envelope_of,
    event_of,
    json_body,
    parse_event,
)
from schemas.media_type import MediaType, MediaTypeRefused, parse_media_type

STRUCTURED_JSON = "application/cloudevents+json"
PREFIXES = ("cloudEvents_", "cloudEvents:", "ce-")
REQUIRED = ("specversion", "id", "source", "type", "subject", "time", "childseq")
_STRING_ATTRIBUTES = frozenset({"specversion", "id", "source", "type", "subject"})
# Attribute names are lower-case letters and digits (CloudEvents 1.0, naming conventions).
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]{1,64}")
_CANONICAL_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,18})")
_IDENTITY_ENCODINGS = frozenset({"", "identity", "utf-8", "utf8"})
_NOT_ATTRIBUTES = frozenset({"data", "data_base64", "datacontenttype"})


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """An event read from a message, and the structured-mode JSON to store for it."""

    event: ChildEvent
    stored: bytes
    mode: str  # structured | binary


def decode_message(
    body: bytes,
    *,
    content_type: str | None,
    content_encoding: str | None = None,
    headers: Mapping[str, Any] | None = None,
) -> DecodedEvent:
    """The event a message carries, or InvalidEvent with a code and a sentence."""
    if content_encoding is not None and content_encoding.strip().lower() not in (
        _IDENTITY_ENCODINGS
    ):
        raise InvalidEvent(
            "content_encoding is not supported: events are sent neither compressed nor encoded",
            code="content_type",
        )
    media = _media_type(content_type)
    if media is not None and media.essence.startswith("application/cloudevents"):
        if media.essence != STRUCTURED_JSON:
            raise InvalidEvent(
                f"content_type: only the JSON event format ({STRUCTURED_JSON}) is accepted",
                code="content_type",
            )
        check_json_media_type(content_type, "content_type", essence=STRUCTURED_JSON)
        return DecodedEvent(parse_event(body), body, "structured")
    found = _attribute_headers(headers or {})
    if found:
        return _binary(body, content_type, found)
    if media is None or media.essence == JSON_MEDIA_TYPE:
        if media is not None:
            check_json_media_type(content_type, "content_type")
        return DecodedEvent(parse_event(body), body, "structured")
    raise InvalidEvent(
        f"content_type is neither {STRUCTURED_JSON} (structured mode) nor, with cloudEvents_"
        " headers (binary mode), application/json",
        code="content_type",
    )


def _media_type(content_type: str | None) -> MediaType | None:
    if content_type is None or not content_type.strip():
        return None
    if not content_type.isprintable() or not content_type.isascii():
        raise InvalidEvent("content_type is not a printable ASCII media type", code="content_type")
    try:
        return parse_media_type(content_type)
    except MediaTypeRefused as exc:
        raise InvalidEvent(f"content_type {exc}", code="content_type") from None


@dataclass(frozen=True, slots=True)
class _Header:
    prefix: str
    attribute: str
    value: Any

    @property
    def name(self) -> str:
        """The header's name, for reasons (never its value)."""
        return self.prefix + self.attribute


def _attribute_headers(headers: Mapping[str, Any]) -> dict[str, _Header]:
    """Attribute name -> header, for every header with a CloudEvents prefix."""
    found: dict[str, _Header] = {}
    for key, value in headers.items():
        if not isinstance(key, str):
            continue
        prefix = next((p for p in PREFIXES if key[: len(p)].lower() == p.lower()), None)
        if prefix is None or value is None:
            continue  # not an attribute, or an unset one
        name = key[len(prefix) :].lower()
        if not _ATTRIBUTE_NAME.fullmatch(name) or name in ("data", "data_base64"):
            continue  # not a name an attribute can have: ignored, like any other header
        header = _Header(prefix, name, value)
        if name in found and not _same(found[name].value, value):
            raise InvalidEvent(
                f"binary mode: {found[name].name} and {header.name} disagree",
                code="invalid_envelope",
            )
        found.setdefault(name, header)
    return found


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _binary(body: bytes, content_type: str | None, found: dict[str, _Header]) -> DecodedEvent:
    prefix = next(iter(found.values())).prefix
    for name in REQUIRED:
        if name not in found:
            raise InvalidEvent(
                f"binary mode: header {prefix}{name} is missing", code="invalid_envelope"
            )
    declared = found.pop("datacontenttype", None)
    datacontenttype = content_type if content_type and content_type.strip() else None
    if declared is not None:
        text = _string(declared)
        if datacontenttype is not None and text != datacontenttype:
            raise InvalidEvent(
                f"binary mode: {declared.name} disagrees with content_type",
                code="invalid_envelope",
            )
        datacontenttype = text
    if datacontenttype is not None:
        check_json_media_type(datacontenttype, "content_type (the data's media type)")
    attributes: dict[str, Any] = {}
    for name, header in found.items():
        if name in _STRING_ATTRIBUTES:
            attributes[name] = _string(header)
        elif name == "time":
            attributes[name] = _time(header)
        elif name == "childseq":
            attributes[name] = _integer(header)
        else:
            value = _extension(header.value)
            if value is not None:
                attributes[name] = value
    envelope = envelope_of(attributes)
    data = json_body(body, "body (the event's data)")
    event = event_of(envelope, data)
    stored = {
        **attributes,
        **({"datacontenttype": datacontenttype} if datacontenttype is not None else {}),
        "data_base64": base64.b64encode(body).decode("ascii"),
    }
    return DecodedEvent(event, orjson.dumps(stored), "binary")


def _string(header: _Header) -> str:
    value = header.value
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent(
                f"binary mode: header {header.name} is not UTF-8 text", code="invalid_envelope"
            ) from None
    if not isinstance(value, str):
        raise InvalidEvent(
            f"binary mode: header {header.name} must be a string", code="invalid_envelope"
        )
    if not _valid_text(value):
        raise InvalidEvent(
            f"binary mode: header {header.name} is not UTF-8 text", code="invalid_envelope"
        )
    return value


def _valid_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8
        return False
    return True


def _time(header: _Header) -> str:
    value = header.value
    if isinstance(value, dt.datetime):  # an AMQP 0-9-1 timestamp
        stamp = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return stamp.isoformat()
    if isinstance(value, int) and not isinstance(value, bool):
        # An AMQP 1.0 timestamp (milliseconds since the epoch), as the official SDK's AMQP
        # binding writes it.
        try:
            return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            raise InvalidEvent(
                f"binary mode: header {header.name} is out of range", code="invalid_envelope"
            ) from None
    return _string(header)


def _integer(header: _Header) -> int:
    value = header.value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str | bytes | bytearray):
        text = _string(header)
        if _CANONICAL_INTEGER.fullmatch(text):
            return int(text)
    raise InvalidEvent(
        f"binary mode: header {header.name} must be an integer", code="invalid_envelope"
    )


def _extension(value: Any) -> Any:
    """An extension attribute's header value as JSON (CloudEvents JSON type mapping).

    None for a table or an array: no attribute holds one, so it is ignored like any header.
    """
    if isinstance(value, bool | int | str) and (not isinstance(value, str) or _valid_text(value)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, str):  # not UTF-8 as it arrived: its bytes, as a Binary value
        return base64.b64encode(value.encode("utf-8", "surrogateescape")).decode("ascii")
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return None
