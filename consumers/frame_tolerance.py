"""Reading any message the broker relays, however odd its properties and headers.

pamqp (under aio-pika) refuses a frame whose short strings or header names are not UTF-8,
whose timestamp lies past the year 9999, or whose header tables nest deeper than Python's
recursion: aiormq then drops the whole connection, the broker hands the message back, and
it is read again, forever, taking every consumer on the connection with it. RabbitMQ relays
all three (tests/integration/test_odd_frames.py). ``install`` makes those decoders tolerant:

- short strings and header names: text with the bytes that are not UTF-8 kept as lone
  surrogates (``surrogateescape``), so that nothing is lost and the bridge can refuse it;
- a timestamp no datetime holds: ``OutOfRangeTimestamp``, its seconds as an int;
- a header table nested deeper than MAX_TABLE_DEPTH, or one that cannot be read at all:
  ``{UNDECODABLE_HEADERS: <its bytes>}``.

Every frame pamqp read before reads exactly as before.
"""

from __future__ import annotations

import datetime as dt
import struct
from typing import Any

from pamqp import decode

UNDECODABLE_HEADERS = "x-xueji-undecodable-headers"
# Far beyond any header a publisher means, far below Python's recursion limit.
MAX_TABLE_DEPTH = 32
_UINT32 = struct.Struct(">I")
_UINT64 = struct.Struct(">Q")


class OutOfRangeTimestamp(int):
    """A timestamp (seconds since the epoch) beyond what a datetime holds."""


class _Unreadable(ValueError):
    """A header table this module cannot read."""


def install() -> None:
    """Put the tolerant decoders in place (idempotent)."""
    decode.METHODS["shortstr"] = short_str
    decode.METHODS["table"] = field_table
    decode.METHODS["timestamp"] = timestamp
    decode.TABLE_MAPPING[b"T"] = timestamp


def short_str(value: bytes) -> tuple[int, str]:
    """A short string; bytes that are not UTF-8 survive as lone surrogates."""
    if not value:
        raise ValueError("Could not unpack short string value")
    length = value[0]
    return length + 1, value[1 : length + 1].decode("utf-8", "surrogateescape")


def timestamp(value: bytes) -> tuple[int, dt.datetime | OutOfRangeTimestamp]:
    """A timestamp; one past the year 9999 stays a number."""
    try:
        seconds: int = _UINT64.unpack(value[0:8])[0]
    except struct.error as err:
        raise ValueError("Could not unpack timestamp value") from err
    try:
        return 8, decode.timestamp(value)[1]
    except (ValueError, OverflowError, OSError):
        return 8, OutOfRangeTimestamp(seconds)


def field_table(value: bytes) -> tuple[int, dict[str, Any]]:
    """A header table; one that cannot be read is kept as its bytes under one name."""
    try:
        length: int = _UINT32.unpack(value[0:4])[0]
    except struct.error as err:
        raise ValueError("Could not unpack data") from err
    raw = value[4 : 4 + length]
    if len(raw) != length:
        raise ValueError("Field table length exceeds available data")
    try:
        return 4 + length, _table(raw, 1)
    except (_Unreadable, ValueError, KeyError, IndexError, struct.error, RecursionError):
        return 4 + length, {UNDECODABLE_HEADERS: bytearray(raw)}


def _table(raw: bytes, depth: int) -> dict[str, Any]:
    if depth > MAX_TABLE_DEPTH:
        raise _Unreadable("header table nested too deeply")
    table: dict[str, Any] = {}
    at = 0
    while at < len(raw):
        key_length = raw[at]
        key = raw[at + 1 : at + 1 + key_length].decode("utf-8", "surrogateescape")
        at += 1 + key_length
        at, table[key] = _value(raw, at, depth)
    return table


def _value(raw: bytes, at: int, depth: int) -> tuple[int, Any]:
    tag = raw[at : at + 1]
    body = raw[at + 1 :]
    if tag in (b"F", b"A"):
        length: int = _UINT32.unpack(body[0:4])[0]
        inner = body[4 : 4 + length]
        if len(inner) != length:
            raise _Unreadable("nested length exceeds the table")
        end = at + 1 + 4 + length
        if tag == b"F":
            return end, _table(inner, depth + 1)
        return end, _array(inner, depth + 1)
    if tag == b"T":
        consumed, stamp = timestamp(body)
        return at + 1 + consumed, stamp
    if not tag or tag not in decode.TABLE_MAPPING:
        raise _Unreadable("unknown field type")
    consumed, value = decode.TABLE_MAPPING[tag](body)
    return at + 1 + consumed, value


def _array(raw: bytes, depth: int) -> list[Any]:
    if depth > MAX_TABLE_DEPTH:
        raise _Unreadable("header array nested too deeply")
    items: list[Any] = []
    at = 0
    while at < len(raw):
        at, item = _value(raw, at, depth)
        items.append(item)
    return items
