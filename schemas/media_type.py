"""Media types as RFC 9110 spells them: case-insensitive, with parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_TYPE = re.compile(rf"\s*({_TOKEN})/({_TOKEN})\s*")
_PARAMETER = re.compile(rf';\s*(?:({_TOKEN})=({_TOKEN}|"(?:[^"\\]|\\.)*"))?\s*')


class MediaTypeRefused(ValueError):
    """Not a media type; the message says why."""


@dataclass(frozen=True, slots=True)
class MediaType:
    """type/subtype in lower case, and parameters by lower-case name."""

    essence: str
    parameters: dict[str, str]

    @property
    def charset(self) -> str | None:
        """The charset parameter, lower case, or None."""
        value = self.parameters.get("charset")
        return value.lower() if value is not None else None


def parse_media_type(value: str) -> MediaType:
    """Parse ``type/subtype; name=value; ...``; raise MediaTypeRefused if it is not one."""
    match = _TYPE.match(value)
    if match is None:
        raise MediaTypeRefused("is not a media type (type/subtype)")
    parameters: dict[str, str] = {}
    at = match.end()
    while at < len(value):
        param = _PARAMETER.match(value, at)
        if param is None:
            raise MediaTypeRefused("has a malformed parameter")
        name, raw = param.group(1), param.group(2)
        if name is not None:
            key = name.lower()
            if key in parameters:
                raise MediaTypeRefused(f"names the parameter {key} twice")
            parameters[key] = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        at = param.end()
    return MediaType(f"{match.group(1)}/{match.group(2)}".lower(), parameters)
