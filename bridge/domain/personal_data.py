"""Personal data by mechanism: what may be shown of a child's data, wherever it appears.

Two jobs, both pure: ``masked``/``masked_body`` show a parked message to an operator with
identity fields masked through any encoding (``data_base64``, base64 of JSON, JSON written
as a string, ``\\uXXXX`` escapes), and ``redact`` takes identity numbers and student numbers
out of any text (a log line, an exception's message) before it leaves the process.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from typing import Any
from urllib.parse import unquote

from bridge.domain.student_number import mask

_IDENTITY_KEYS = {"id_number", "student_number", "previous_student_number", "new_student_number"}
_PERSONAL_KEYS = {"name", "birth_date"}
# An identity number (18 characters) or a student number (G, J or L and 18 more) anywhere in
# text: masked whatever field holds it.
_NUMBERS = re.compile(r"(?<![0-9A-Za-z])[GJLgjl]?[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
# Deeper than any event: what lies beyond is not shown (and costs no recursion).
_MASK_DEPTH = 24
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


def mask_name(name: str) -> str:
    """Keep the family name's first character: enough to tell cases apart, not to identify."""
    return (name[:1] + "*" * max(len(name) - 1, 1)) if name else ""


def masked(value: Any, key: str = "", depth: int = 0) -> Any:
    """A JSON value with identity fields masked (names, numbers, birth dates).

    It sees through encodings: ``data_base64`` and any other base64 of JSON, and JSON
    written as a string, are decoded and masked alike (shown decoded); identity and student
    numbers are masked wherever they appear.
    """
    if depth > _MASK_DEPTH:
        return "<nested too deeply to show>"
    if isinstance(value, dict):
        return {_printable(k): masked(v, k, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, key, depth + 1) for v in value]
    if isinstance(value, str):
        if key in _IDENTITY_KEYS or key == "subject" or key == "existing_student_number":
            return mask(value)
        if key == "name":
            return mask_name(value)
        if key in _PERSONAL_KEYS:
            return value[:4] + "-**-**" if len(value) >= 4 else "****"
        if key == "content_base64":
            return f"<{len(value)} characters>"
        inner = _decoded(value)
        if inner is not None:
            return {"(decoded)": masked(inner, key, depth + 1)}
        if key == "data_base64":
            return f"<{len(value)} characters of base64>"
        return _printable(_NUMBERS.sub(lambda m: mask(m.group(0)), _unescaped(value)))
    return value


def _printable(text: str) -> str:
    # A lone surrogate (JSON's "\ud800") cannot be written as UTF-8: show it escaped.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _decoded(text: str) -> Any:
    """The JSON object or array *text* holds, as JSON or base64 of JSON; else None."""
    candidates: list[str] = []
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        candidates.append(stripped)
    if _BASE64.fullmatch(stripped):
        with contextlib.suppress(binascii.Error, ValueError):
            candidates.append(base64.b64decode(stripped, validate=True).decode("utf-8"))
    for candidate in candidates:
        try:
            parsed = json.loads(candidate)
        except (ValueError, RecursionError):
            continue
        if isinstance(parsed, dict | list):
            return parsed
    return None


def masked_body(body: bytes) -> str:
    """A parked message's body for an operator's eyes: JSON with identity fields masked."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        inner = _decoded(body.decode("ascii", "replace"))  # base64 of JSON, perhaps
        if inner is None:
            # Not JSON: its bytes may hold anything; show only its size.
            return f"<{len(body)} bytes, not JSON>"
        parsed = {"(decoded)": inner}
    return json.dumps(masked(parsed), ensure_ascii=False, indent=2)


# In free text (a log line): an 18-character identity number, alone or after G, J or L, also
# with a lower-case x and within words, as a driver or validator may quote it.
_IN_TEXT = re.compile(r"(?<![0-9])[GJLgjl]?[0-9]{17}[0-9Xx](?![0-9])")


_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})")


def _unescaped(text: str) -> str:
    # JSON quoted inside text keeps its escapes: "\u0047\u0031…" spells a G number.
    if "\\u" not in text:
        return text
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


# Full-width digits and letters (as a Chinese input method types them) read as ASCII.
_WIDE = str.maketrans(
    {chr(0xFF10 + i): str(i) for i in range(10)}
    | {chr(0xFF21 + ord(c) - 65): c for c in "GJLX"}
    | {chr(0xFF41 + ord(c) - 97): c for c in "gjlx"}
)
_WIDE_DIGIT = re.compile("[\uff10-\uff19]")


def _plain(text: str) -> str:
    # A number may come percent-encoded (a path in a URL: %47 is G) or in full width.
    if "%" in text:
        text = unquote(text)
    if _WIDE_DIGIT.search(text):
        text = text.translate(_WIDE)
    return text


def redact(text: str) -> str:
    """*text* with every identity number and student number masked (``G***12``), written
    plainly, with JSON's ``\\uXXXX`` escapes, percent-encoded or in full-width digits."""
    if len(text) < 18:
        return text
    return _IN_TEXT.sub(lambda m: mask(m.group(0)), _plain(_unescaped(text)))
