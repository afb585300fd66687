"""AMQP header and property values as JSON PostgreSQL stores as it is, and back.

jsonb refuses NUL in text and text that is not UTF-8, and JSON has no bytes, decimals,
timestamps or non-finite numbers. Values JSON holds as they are stay plain, so that an
operator reads ``{"x-death": [{"count": 20, ...}]}``; every other one becomes a tagged
object ``{"$amqp": <kind>, ...}`` that keeps it exactly:

- ``bytes`` (``base64``), ``text`` (a string holding NUL or bytes that were not UTF-8:
  ``base64`` of its bytes), ``decimal`` and ``float`` (``value`` as text), ``timestamp``
  (``value`` RFC 3339, or ``seconds`` when no datetime holds it);
- ``table`` (``entries``: [name, value] pairs) when a name is not plain text or could be
  mistaken for a tag.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
from typing import Any

TAG = "$amqp"


def _plain_text(value: str) -> bool:
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text_bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def to_json(value: Any) -> Any:
    """*value* (as aio-pika decodes it) as JSON that PostgreSQL stores as it is."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if type(value) is not int:  # OutOfRangeTimestamp and other int-like markers
            return {TAG: "timestamp", "seconds": int(value)}
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {TAG: "float", "value": repr(value)}
    if isinstance(value, str):
        if _plain_text(value):
            return value
        return {TAG: "text", "base64": base64.b64encode(_text_bytes(value)).decode("ascii")}
    if isinstance(value, bytes | bytearray | memoryview):
        return {TAG: "bytes", "base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, decimal.Decimal):
        return {TAG: "decimal", "value": str(value)}
    if isinstance(value, dt.datetime):
        stamp = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return {TAG: "timestamp", "value": stamp.isoformat()}
    if isinstance(value, dict):
        keys = list(value)
        if all(isinstance(k, str) and _plain_text(k) and not k.startswith(TAG) for k in keys):
            return {k: to_json(v) for k, v in value.items()}
        return {TAG: "table", "entries": [[to_json(str(k)), to_json(v)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return {TAG: "unknown", "type": type(value).__name__}


def from_json(value: Any) -> Any:
    """The AMQP value *value* stands for, to publish again.

    Text that was not UTF-8 comes back as bytes (a byte array header): the broker's codec
    cannot write it as text.
    """
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(TAG)
    if kind is None:
        return {k: from_json(v) for k, v in value.items()}
    if kind == "bytes":
        return bytearray(base64.b64decode(value["base64"]))
    if kind == "text":
        raw = base64.b64decode(value["base64"])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return bytearray(raw)
    if kind == "decimal":
        return decimal.Decimal(value["value"])
    if kind == "float":
        return float(value["value"])
    if kind == "timestamp":
        if "value" in value:
            return dt.datetime.fromisoformat(value["value"])
        return int(value["seconds"])
    if kind == "table":
        return {_key(from_json(k)): from_json(v) for k, v in value["entries"]}
    return None


def _key(value: Any) -> str:
    if isinstance(value, str):
        return value
    return bytes(value).decode("utf-8", "replace")
