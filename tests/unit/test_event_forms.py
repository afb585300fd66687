"""Every form events.md's Compatibility section allows is the same event; the rest is refused.

The other publishers here are the official CloudEvents SDK (``simulator.publisher.sdk_message``:
its AMQP binding in structured and binary mode, and its RabbitMQ binding) beside the
hand-built bodies of tests/support/wire_events.py.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import InvalidEvent
from schemas.amqp_binding import DecodedEvent, decode_message
from schemas.events import parse_event
from simulator.publisher import (
    FORMS,
    MALFORMED_KINDS,
    NASTY_KINDS,
    OutgoingMessage,
    malformed_message,
    sdk_message,
)
from tests.support.wire_events import CHILD, G, cancelled, graduated, key_info, number_assigned

L_NUMBER = "L110108202001091537"
ID_NUMBER = G[1:]
PERSON = {**CHILD, "id_type": "resident_id", "id_number": ID_NUMBER}
STRUCTURED = "application/cloudevents+json"


def wire() -> dict[str, Any]:
    return graduated(G, 3, dict(PERSON))


def decoded(message: OutgoingMessage) -> DecodedEvent:
    return decode_message(message.body, content_type=message.content_type, headers=message.headers)


def refused(body: bytes, content_type: str | None = STRUCTURED, **kw: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        decode_message(body, content_type=content_type, **kw)
    return caught.value


def binary_headers(event: dict[str, Any], prefix: str = "cloudEvents_") -> dict[str, Any]:
    return {f"{prefix}{k}": v for k, v in event.items() if k not in ("data", "datacontenttype")}


# --- accepted: the same event, and the stored form keeps what arrived -------------------
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    "make", [wire, lambda: cancelled(G, 4), lambda: key_info(G, 5), lambda: number_assigned(
        L_NUMBER, G, 6)],
    ids=["graduated", "cancelled", "key_info_changed", "number_assigned"],
)  # fmt: skip
def test_every_form_of_an_event_is_the_same_event(form: str, make: Any) -> None:
    event = make()
    expected = parse_event(orjson.dumps(event))
    got = decoded(sdk_message(copy.deepcopy(event), form))
    assert got.event == expected
    # What the ledger stores reads back as the same event.
    assert parse_event(got.stored) == expected


def test_the_sdks_binary_mode_is_read_from_headers_and_the_body_is_the_data() -> None:
    message = sdk_message(wire(), "sdk_binary")
    assert message.content_type == "application/json"
    assert message.headers is not None and "cloudEvents_subject" in message.headers
    assert isinstance(message.headers["cloudEvents_time"], int)  # an AMQP 1.0 timestamp
    got = decoded(message)
    assert got.mode == "binary"
    stored = orjson.loads(got.stored)
    assert base64.b64decode(stored["data_base64"]) == message.body  # every byte of the data


def test_a_structured_event_is_stored_as_it_arrived_with_its_additions() -> None:
    event = wire()
    event["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event["data"]["x_province_code"] = {"code": "44", "tags": [1, 2]}
    event["data"]["record_file"]["x_storage"] = "cold"
    event["data"]["child"]["x_nickname"] = "小明"
    body = orjson.dumps(event)
    got = decode_message(body, content_type=STRUCTURED)
    assert got.stored == body
    assert got.event == parse_event(orjson.dumps(wire() | {"id": event["id"]}))


def test_binary_mode_keeps_extension_attributes_with_the_stored_event() -> None:
    event = wire()
    headers = binary_headers(event) | {
        "cloudEvents_traceparent": "00-1",
        "cloudEvents_partitionkey": b"\x01\x02",
        "cloudEvents_ratio": 0.5,
        "cloudEvents_sampled": True,
        "cloudEvents_when": dt.datetime(2026, 7, 1, tzinfo=dt.UTC),
        "x-other-header": {"nested": [1, 2]},
    }
    got = decode_message(orjson.dumps(event["data"]), content_type=None, headers=headers)
    stored = orjson.loads(got.stored)
    assert stored["traceparent"] == "00-1"
    assert stored["partitionkey"] == base64.b64encode(b"\x01\x02").decode()
    assert (stored["ratio"], stored["sampled"]) == (0.5, True)
    assert stored["when"].startswith("2026-07-01T00:00:00")
    assert "x-other-header" not in stored and "datacontenttype" not in stored


@pytest.mark.parametrize(
    "content_type",
    [
        "application/cloudevents+json",
        "Application/CloudEvents+JSON",
        "application/cloudevents+json; charset=utf-8",
        'APPLICATION/CLOUDEVENTS+JSON;CHARSET="UTF-8"',
        "application/cloudevents+json ; charset=UTF-8 ; profile=x",
        "application/json",
        "application/JSON; charset=utf-8",
        None,
        "",
    ],
)
def test_media_types_are_read_in_any_letter_case_with_parameters(content_type: str | None) -> None:
    assert decode_message(orjson.dumps(wire()), content_type=content_type).mode == "structured"


@pytest.mark.parametrize(
    "datacontenttype", ["application/json", "Application/Json; Charset=UTF-8", None, "absent"]
)
def test_datacontenttype_may_be_any_spelling_of_json_or_absent(datacontenttype: str | None) -> None:
    event = wire()
    if datacontenttype == "absent":
        del event["datacontenttype"]
    else:
        event["datacontenttype"] = datacontenttype  # null: unset (CloudEvents JSON format)
    assert decode_message(orjson.dumps(event), content_type=STRUCTURED).event.childseq == 3


def test_data_base64_is_the_same_event() -> None:
    event = wire()
    data = event.pop("data")
    event["data_base64"] = base64.b64encode(orjson.dumps(data)).decode()
    got = decode_message(orjson.dumps(event), content_type=STRUCTURED)
    assert got.event == parse_event(orjson.dumps(wire() | {"id": event["id"]}))


def test_the_older_cloud_events_colon_prefix_and_string_encoded_values_are_read() -> None:
    event = wire()
    headers = binary_headers(event, "cloudEvents:") | {"cloudEvents:childseq": "3"}
    got = decode_message(
        orjson.dumps(event["data"]), content_type="application/json; charset=utf-8",
        headers=headers,
    )  # fmt: skip
    assert got.event == parse_event(orjson.dumps(event))


def test_binary_time_may_be_an_amqp_timestamp() -> None:
    event = wire()
    headers = binary_headers(event) | {
        "cloudEvents_time": dt.datetime(2026, 7, 16, 0, 17, 3, tzinfo=dt.UTC)
    }
    got = decode_message(orjson.dumps(event["data"]), content_type=None, headers=headers)
    assert got.event.time == dt.datetime(2026, 7, 16, 0, 17, 3, tzinfo=dt.UTC)


def test_a_byte_order_mark_before_the_json_is_ignored() -> None:
    body = b"\xef\xbb\xbf" + orjson.dumps(wire())
    assert decode_message(body, content_type=STRUCTURED).stored == body


# --- refused, with a reason that says what was wrong ------------------------------------
@pytest.mark.parametrize("childseq", [2**31, 2**40, 0, -1, "3", 3.0, True, None])
def test_childseq_outside_the_cloudevents_integer_range_or_not_an_integer_is_refused(
    childseq: Any,
) -> None:
    event = wire() | {"childseq": childseq}
    error = refused(orjson.dumps(event))
    assert error.code == "invalid_envelope"
    assert error.args[0].startswith("childseq: ")


@pytest.mark.parametrize("time", ["9999-12-31T23:00:00-10:00", "0001-01-01T00:00:00+14:00"])
def test_a_time_that_names_no_instant_in_utc_is_refused(time: str) -> None:
    # Well-formed RFC 3339, but no instant in UTC: stored or shown, it would overflow.
    error = refused(orjson.dumps(wire() | {"time": time}))
    assert error.code == "invalid_envelope"
    assert error.args[0].startswith("time: ")


@pytest.mark.parametrize("data", [[], "x", 3, None])
def test_data_that_is_not_an_object_is_refused(data: Any) -> None:
    error = refused(orjson.dumps(wire() | {"data": data}))
    assert (error.code, str(error)) == ("invalid_data", "data: is not a JSON object")


@pytest.mark.parametrize("character", ["\x00", "\x07", "\t", "\n", "\x1f", "\x7f"])
@pytest.mark.parametrize(
    "path", [("child", "name"), ("child", "nationality"), ("record_file", "uri"),
             ("kindergarten_code",)]
)  # fmt: skip
def test_a_text_field_holding_a_control_character_is_refused(
    character: str, path: tuple[str, ...]
) -> None:
    event = wire()
    holder = event["data"]
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = holder[path[-1]][:2] + character + holder[path[-1]][2:]
    error = refused(orjson.dumps(event))
    assert error.code == "invalid_data"
    assert str(error).startswith("data." + ".".join(path) + ": ")


def test_both_data_and_data_base64_are_refused() -> None:
    event = wire()
    event["data_base64"] = base64.b64encode(orjson.dumps(event["data"])).decode()
    error = refused(orjson.dumps(event))
    assert str(error) == "data and data_base64 are both present"


@pytest.mark.parametrize(
    ("encoded", "says"),
    [("not base64!", "is not base64"), (base64.b64encode(b"\xff\xfe").decode(), "not UTF-8"),
     (base64.b64encode(b"[1]").decode(), "not a JSON object"), (17, "must be a string")],
)  # fmt: skip
def test_data_base64_that_is_not_base64_json_is_refused(encoded: Any, says: str) -> None:
    event = wire()
    del event["data"]
    event["data_base64"] = encoded
    assert says in str(refused(orjson.dumps(event)))


@pytest.mark.parametrize(
    "content_type",
    ["application/cloudevents+json; charset=iso-8859-1",
     "application/cloudevents+json;charset=utf-16", "application/json; charset=gbk"],
)  # fmt: skip
def test_a_charset_other_than_utf8_is_refused(content_type: str) -> None:
    error = refused(orjson.dumps(wire()), content_type)
    assert error.code == "content_type"
    assert "charset other than UTF-8" in str(error)


@pytest.mark.parametrize(
    "datacontenttype", ["text/plain", "application/xml", "application/json; charset=latin1", 7]
)
def test_a_datacontenttype_other_than_json_is_refused(datacontenttype: Any) -> None:
    error = refused(orjson.dumps(wire() | {"datacontenttype": datacontenttype}))
    assert str(error).startswith("datacontenttype")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"a": 1, "a": 2}', "names one member twice"),
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b'{"\\udfff": 1}', "lone surrogate"),
        (b'{"a": "\xed\xa0\x80"}', "not UTF-8"),  # a surrogate encoded in UTF-8 (CESU)
        (b'{"a": "\xff"}', "not UTF-8"),
        (b"\xff\xfe{\x00}\x00", "not UTF-8"),
        (b'{"a": NaN}', "NaN is not JSON"),
        (b'{"a": -Infinity}', "-Infinity is not JSON"),
        (b'{"a": 1e400}', "beyond the range of a double"),
        (b'{"a": ' + b"9" * 5000 + b"}", "not JSON"),
        (b"[" * 200_000 + b"]" * 200_000, "nested deeper"),
        (b'{"a":' * 100 + b"1" + b"}" * 100, "nested deeper"),
        (b"", "not JSON"),
        (b"\x00{not json", "not JSON"),
    ],
)
def test_json_that_is_not_i_json_is_refused(body: bytes, says: str) -> None:
    error = refused(body)
    assert error.code == "not_json"
    assert says in str(error)


def test_an_envelope_attribute_with_a_control_character_is_refused() -> None:
    event = wire() | {"subject": G + "\x00"}
    assert refused(orjson.dumps(event)).code == "invalid_envelope"


@pytest.mark.parametrize(
    "missing", ["specversion", "id", "source", "type", "subject", "time", "childseq"]
)
@pytest.mark.parametrize("prefix", ["cloudEvents_", "cloudEvents:", "ce-"])
def test_binary_mode_missing_an_attribute_names_the_header(missing: str, prefix: str) -> None:
    event = wire()
    headers = binary_headers(event, prefix)
    del headers[prefix + missing]
    error = refused(orjson.dumps(event["data"]), "application/json", headers=headers)
    assert (error.code, str(error)) == (
        "invalid_envelope", f"binary mode: header {prefix}{missing} is missing"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("header", "value", "says"),
    [
        ("cloudEvents_id", b"\xff\xfe", "cloudEvents_id is not UTF-8 text"),
        ("cloudEvents_id", "\udcff", "cloudEvents_id is not UTF-8 text"),
        ("cloudEvents_subject", 12, "cloudEvents_subject must be a string"),
        ("cloudEvents_childseq", {"v": 1}, "cloudEvents_childseq must be an integer"),
        ("cloudEvents_childseq", "03", "cloudEvents_childseq must be an integer"),
        ("cloudEvents_childseq", "3.0", "cloudEvents_childseq must be an integer"),
        ("cloudEvents_childseq", True, "cloudEvents_childseq must be an integer"),
        ("cloudEvents_childseq", 2**31, "childseq: Input should be less than or equal"),
        ("cloudEvents_time", 10**20, "cloudEvents_time is out of range"),
        ("cloudEvents_time", [1], "cloudEvents_time must be a string"),
    ],
)
def test_a_binary_mode_header_of_the_wrong_kind_is_refused_by_name(
    header: str, value: Any, says: str
) -> None:
    event = wire()
    headers = binary_headers(event) | {header: value}
    error = refused(orjson.dumps(event["data"]), "application/json", headers=headers)
    assert says in str(error)


def test_binary_mode_attributes_under_two_prefixes_must_agree() -> None:
    event = wire()
    headers = binary_headers(event) | {"cloudEvents:childseq": 4}
    error = refused(orjson.dumps(event["data"]), None, headers=headers)
    assert "disagree" in str(error)


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [("text/plain", None), ("application/cloudevents-batch+json", None),
     ("application/cloudevents+avro", None), ("application json", None),
     ("application/json\x00", None), ("application/json\udcff", None),
     (STRUCTURED, "gzip")],
)  # fmt: skip
def test_other_content_types_and_encodings_are_refused(
    content_type: str, encoding: str | None
) -> None:
    error = refused(orjson.dumps(wire()), content_type, content_encoding=encoding)
    assert error.code == "content_type"


@pytest.mark.parametrize("kind", MALFORMED_KINDS + NASTY_KINDS)
def test_the_simulators_malformed_messages_are_refused_without_personal_data(kind: str) -> None:
    message = malformed_message(random.Random(kind), kind)
    error = refused(message.body, message.content_type, headers=message.headers)
    reason = str(error)
    assert reason and error.code
    assert reason.isprintable()  # storable and readable as it is
    if message.event is not None and isinstance(message.event.get("data"), dict):
        person = message.event["data"].get("child") or {}
        for value in (person.get("name"), person.get("id_number")):
            assert not value or value not in reason


# --- any bytes, any headers: an event or a refusal, nothing else -------------------------
_HEADER_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats()
    | st.text() | st.binary() | st.datetimes(timezones=st.just(dt.UTC)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=3),
    max_leaves=8,
)  # fmt: skip
_HEADER_NAMES = st.sampled_from(
    ["cloudEvents_id", "cloudEvents_childseq", "cloudEvents_time", "cloudEvents_subject",
     "cloudEvents:type", "ce-specversion", "cloudEvents_x", "x-death", "other"]
) | st.text(max_size=12)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    body=st.one_of(st.binary(max_size=300), st.just(orjson.dumps(wire()))),
    content_type=st.none() | st.text(max_size=40) | st.sampled_from(
        ["application/json", STRUCTURED, "application/cloudevents+json; charset=latin1"]),
    headers=st.none() | st.dictionaries(_HEADER_NAMES, _HEADER_VALUES, max_size=6),
)  # fmt: skip
def test_any_message_is_an_event_or_a_refusal_with_a_storable_reason(
    body: bytes, content_type: str | None, headers: dict[str, Any] | None
) -> None:
    try:
        got = decode_message(body, content_type=content_type, headers=headers)
    except InvalidEvent as error:
        assert error.code and str(error).isprintable()
    else:
        assert parse_event(got.stored) == got.event


def test_a_refusal_never_quotes_the_value_it_refused() -> None:
    number = "L110108202002301537"  # a temporary number whose birth date is 30 February
    event = cancelled(number, 1) | {"subject": number}
    error = refused(orjson.dumps(event))
    assert error.code == "invalid_envelope"
    assert "20200230" not in str(error) and number not in str(error)
