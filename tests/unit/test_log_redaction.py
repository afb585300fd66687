"""Every log record leaves without identity or student numbers, whoever logged it.

The filter is installed for the process (`xueji`) and for the tests (tests/conftest.py):
a library's `log.exception`, an f-string, pydantic's or asyncpg's quoted input, all alike.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, ValidationError

from bridge.domain.personal_data import redact
from bridge.failures import Redacting

ID_NUMBER = "11010520190307001X"
G_NUMBER = "G" + ID_NUMBER
SECRETS = (ID_NUMBER, G_NUMBER, ID_NUMBER.lower())


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What a handler of this process writes, with a traceback's full text when given."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        logger.removeHandler(handler)


def leaked(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def test_a_message_and_its_arguments_are_redacted(lines: io.StringIO) -> None:
    log = logging.getLogger("test.redaction")
    log.info("child %s moved", G_NUMBER)
    log.warning(f"identity {ID_NUMBER.lower()} in an f-string")
    log.error("in a dict: %s", {"id_number": ID_NUMBER})
    text = lines.getvalue()
    assert leaked(text) == [], text
    assert "G***1X" in text and "child" in text


def test_an_exception_is_logged_by_type_and_frames_never_its_text(lines: io.StringIO) -> None:
    log = logging.getLogger("test.redaction")

    class Child(BaseModel):
        age: int

    try:
        Child.model_validate({"age": G_NUMBER})  # pydantic quotes the input it refused
    except ValidationError:
        log.exception("validating failed")
    quoted = f"duplicate key value (student_number)=({G_NUMBER})"
    try:
        raise RuntimeError(quoted)
    except RuntimeError:
        log.error("a library's log line", exc_info=True)
    text = lines.getvalue()
    assert leaked(text) == [], text
    assert "ValidationError" in text and "RuntimeError" in text
    assert "test_an_exception_is_logged_by_type_and_frames_never_its_text" in text  # frames
    assert "duplicate key value" not in text  # the message is not logged at all


def test_escaped_json_is_seen_through() -> None:
    escaped = json.dumps({"note": G_NUMBER}).replace("G", "\\u0047").replace("1", "\\u0031")
    assert "\\u0031" in escaped
    assert leaked(redact(escaped)) == [] and "G***1X" in redact(escaped)


@pytest.mark.parametrize(
    "spelled",
    [
        "GET /v1/handoffs/%47" + ID_NUMBER + " 404",  # a path as a proxy logs it
        "/v1/handoffs/" + "".join(f"%{ord(c):02X}" for c in G_NUMBER),
        G_NUMBER.translate({ord(c): 0xFF10 + int(c) for c in "0123456789"}),  # full width
    ],
)
def test_percent_encoded_and_full_width_numbers_are_seen_through(spelled: str) -> None:
    assert G_NUMBER not in spelled
    assert leaked(redact(spelled)) == [] and "***1X" in redact(spelled)


def test_the_filter_on_a_handler_redacts_what_reaches_it() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "id %s", (ID_NUMBER,), None)
    assert Redacting().filter(record)
    assert record.getMessage() == "id 1***1X"


@pytest.mark.parametrize(
    "text",
    ["run 12345678901234567 took 3 ms", "sha256 " + "a" * 64, "1234567890123456789012 rows"],
)
def test_other_numbers_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_the_xueji_process_installs_the_filter() -> None:
    program = (
        "import logging\n"
        "from bridge.entrypoints.cli import _configure_logging\n"
        "_configure_logging('INFO')\n"
        f"logging.getLogger('aiohttp.server').error('from a library: %s', {G_NUMBER!r})\n"
        "try:\n"
        f"    raise ValueError({ID_NUMBER!r})\n"
        "except ValueError:\n"
        "    logging.getLogger('bridge').exception('failed')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert leaked(done.stderr) == [], done.stderr
    assert "G***1X" in done.stderr and "ValueError" in done.stderr
