"""JSON as events.md requires it: I-JSON (RFC 7493), read without trusting its shape.

I-JSON is UTF-8 only, with no lone surrogates, no duplicate member names and no numbers a
double cannot hold. On top of that a document may not nest deeper than MAX_DEPTH: an event
is four levels deep, and a deeper one would only cost recursion further on.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Events nest four levels; extensions and additions get room, recursion does not.
MAX_DEPTH = 64
_BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonRefused(ValueError):
    """The bytes are not I-JSON; the message says why (never quoting the content)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise JsonRefused("a JSON object names one member twice (not I-JSON)")
    return obj


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise JsonRefused("a JSON number is beyond the range of a double (not I-JSON)")
    return value


def _constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not JSON")


_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_float=_finite, parse_constant=_constant
)


def loads(raw: bytes) -> Any:
    """Parse *raw* as I-JSON; raise JsonRefused with the reason otherwise.

    A leading byte order mark is ignored, as RFC 8259 allows a parser to.
    """
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonRefused("the bytes are not UTF-8") from None
    try:
        value = _DECODER.decode(text)
    except JsonRefused:
        raise
    except RecursionError:
        raise JsonRefused(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # JSONDecodeError, or an integer of more digits than Python parses
        raise JsonRefused("the bytes are not JSON") from None
    _check_shape(value)
    return value


def _check_shape(value: Any) -> None:
    """Depth and lone surrogates (from escapes), without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise JsonRefused("a JSON string holds a lone surrogate (not I-JSON)")
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise JsonRefused(f"JSON nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, member in item.items():
                    if _SURROGATE.search(key):
                        raise JsonRefused("a JSON member name holds a lone surrogate (not I-JSON)")
                    stack.append((member, depth + 1))
            else:
                stack.extend((member, depth + 1) for member in item)
