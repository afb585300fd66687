"""What operators see of a parked message: identity fields masked through any encoding."""

from __future__ import annotations

import base64
import json

import orjson
import pytest

from bridge.services.recovery import masked_body, original_message
from simulator.publisher import sdk_message
from tests.support.wire_events import G, graduated

NAME = "王小明"
PERSON = {"name": NAME, "gender": "M", "birth_date": "2020-01-09", "id_type": "resident_id",
          "id_number": G[1:], "nationality": "CN"}  # fmt: skip


def event() -> dict[str, object]:
    return graduated(G, 1, dict(PERSON))


def shows_nobody(text: str) -> None:
    assert NAME not in text and G[1:] not in text and "2020-01-09" not in text
    text.encode("utf-8")  # printable as it is (the console writes UTF-8)


def base64_of(value: object) -> str:
    return base64.b64encode(orjson.dumps(value)).decode()


def test_a_plain_body_is_masked() -> None:
    shown = masked_body(orjson.dumps(event()))
    shows_nobody(shown)
    assert "王**" in shown and "G***76" in shown


def test_data_base64_is_decoded_and_masked() -> None:
    wire = event()
    wire["data_base64"] = base64_of(wire.pop("data"))
    shown = masked_body(orjson.dumps(wire))
    shows_nobody(shown)
    assert wire["data_base64"] not in shown  # not even encoded
    assert "王**" in shown  # decoded, so an operator can read it


def test_json_written_as_a_string_is_masked() -> None:
    shown = masked_body(orjson.dumps({"payload": json.dumps(event(), ensure_ascii=False)}))
    shows_nobody(shown)
    assert "王**" in shown


def test_a_body_that_is_base64_of_json_is_masked() -> None:
    shown = masked_body(base64_of(event()).encode())
    shows_nobody(shown)


def test_numbers_are_masked_wherever_they_appear() -> None:
    shown = masked_body(orjson.dumps({"note": f"child {G} (ID {G[1:]}) moved", "x": [G]}))
    shows_nobody(shown)
    assert G not in shown


def test_a_binary_mode_body_is_the_data_and_is_masked() -> None:
    sent = sdk_message(event(), "sdk_binary")
    shows_nobody(masked_body(sent.body))


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 900 + b"1" + b"}" * 900, b'{"\\ud800": "\\udfff"}',
     b"\xff\xfe\x00", b""],
)  # fmt: skip
def test_any_body_is_shown_without_failing(body: bytes) -> None:
    shown = masked_body(body)
    shown.encode("utf-8")


def test_a_retry_sends_the_publishers_headers_and_content_type_back() -> None:
    headers = {
        "cloudEvents_subject": G, "cloudEvents_childseq": 3,
        "cloudEvents_id": {"$amqp": "bytes", "base64": base64.b64encode(b"\xff").decode()},
        "x-death": [{"count": 20}], "x-first-death-reason": "delivery_limit",
        "x-park-code": "x", "x-delivery-count": 3, "x-original-routing-key": "child.graduated",
    }  # fmt: skip
    original = original_message({"content_type": "application/json"}, headers)
    assert original is not None
    assert original.content_type == "application/json"
    assert original.headers == {
        "cloudEvents_subject": G,
        "cloudEvents_childseq": 3,
        "cloudEvents_id": bytearray(b"\xff"),
    }
    assert original_message({}, headers) is None  # rows parked before properties were kept


def test_numbers_spelled_in_escapes_are_masked() -> None:
    # JSON quoted twice keeps its \uXXXX escapes in the decoded text: still a number.
    spelled = "".join(f"\\u{ord(c):04x}" for c in G)
    shown = masked_body(orjson.dumps({"note": f"moved: {spelled}", "raw": spelled}))
    assert G not in shown and G[1:] not in shown and spelled not in shown
    assert "G***76" in shown
