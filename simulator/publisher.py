"""Publishing preschool events to RabbitMQ as events.md describes, with optional mischief.

`plan_messages` decides what goes out (duplicates, shuffled and interleaved order, the
forms of the contract's Compatibility section, malformed messages) without any I/O;
`EventPublisher` sends with publisher confirms; `publish_cohort` does both. `seed_cohort`
prepares the preschool side over HTTP.

The other forms are written as other provinces' publishers would: `sdk_message` builds the
event with the official CloudEvents SDK (the `cloudevents` package, a development
dependency imported only when used) and maps the SDK's AMQP or RabbitMQ binding onto an
AMQP 0-9-1 message.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import io
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import aio_pika
import aiohttp
import orjson

from simulator import names
from simulator.cohort import TYPE_PREFIX, Cohort

EXCHANGE = "preschool.events"
CONTENT_TYPE = "application/cloudevents+json"
MALFORMED_KINDS = (
    "not_json",
    "not_cloudevents",
    "unknown_type",
    "bad_check_character",
    "missing_field",
    "bad_date",
)
# Messages that break the contract in nastier ways (events.md, Compatibility: "still not
# an event"); the fault suite mixes them in beside MALFORMED_KINDS.
NASTY_KINDS = (
    "control_character",
    "deep_nesting",
    "number_out_of_range",
    "huge_number",
    "duplicate_key",
    "lone_surrogate",
    "not_utf8",
    "other_charset",
    "data_and_data_base64",
    "data_not_object",
    "binary_missing_header",
    "binary_header_not_utf8",
    "binary_header_table",
)
# The forms of one event a publisher may send (events.md, Compatibility), besides "plain".
FORMS = (
    "sdk_structured",  # the SDK's AMQP binding, structured mode
    "sdk_binary",  # the SDK's AMQP binding, binary mode: cloudEvents_ headers
    "sdk_binary_colon",  # the same with the older cloudEvents: prefix
    "sdk_rabbitmq",  # the SDK's RabbitMQ binding, binary mode: ce- headers, strings only
    "data_base64",  # structured, data as base64
    "loose",  # structured: media types in other spellings, no datacontenttype, additions
)
# Confirms are awaited per window: large enough to pipeline, small enough to keep order.
PUBLISH_WINDOW = 100


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to publish (or published): its routing key, body and why it exists."""

    routing_key: str
    body: bytes
    message_id: str | None
    kind: str  # "event", "duplicate" or one of MALFORMED_KINDS / NASTY_KINDS
    event: dict[str, Any] | None  # the event (or the malformed JSON payload), if JSON
    content_type: str | None = CONTENT_TYPE
    headers: dict[str, Any] | None = None
    form: str = "plain"  # how an event is written: "plain" or one of FORMS


def routing_key(event: Mapping[str, Any]) -> str:
    """The event type without its `cn.edu.preschool.` prefix."""
    return str(event["type"]).removeprefix(TYPE_PREFIX)


def event_message(event: dict[str, Any], kind: str = "event") -> OutgoingMessage:
    """The message carrying one well-formed event."""
    return OutgoingMessage(routing_key(event), orjson.dumps(event), event["id"], kind, event)


def _sdk_event(event: Mapping[str, Any]) -> Any:
    from cloudevents.core.v1.event import CloudEvent

    attributes = {k: v for k, v in event.items() if k != "data"}
    attributes["time"] = dt.datetime.fromisoformat(str(event["time"]))
    return CloudEvent(attributes=attributes, data=dict(event["data"]))


def sdk_message(event: dict[str, Any], form: str, kind: str = "event") -> OutgoingMessage:
    """The message carrying *event* in *form* (one of FORMS), as another publisher sends it.

    The SDK's AMQP binding is written for AMQP 1.0: its application properties become the
    message's headers and its content-type property the message's content_type.
    """
    key = routing_key(event)
    if form in ("sdk_structured", "sdk_binary", "sdk_binary_colon"):
        from cloudevents.core.bindings import amqp

        sdk = _sdk_event(event)
        if form == "sdk_structured":
            message = amqp.to_structured_event(sdk)
        else:
            message = amqp.to_binary_event(sdk)
        headers = dict(message.application_properties)
        if form == "sdk_binary_colon":
            headers = {k.replace("cloudEvents_", "cloudEvents:", 1): v for k, v in headers.items()}
        return OutgoingMessage(
            key, message.application_data, event["id"], kind, event,
            content_type=message.properties.get("content-type"), headers=headers or None,
            form=form,
        )  # fmt: skip
    if form == "sdk_rabbitmq":
        from cloudevents.core.bindings import rabbitmq

        sent = rabbitmq.to_binary_event(_sdk_event(event))
        return OutgoingMessage(
            key, sent.body, event["id"], kind, event, content_type=sent.content_type,
            headers=dict(sent.headers), form=form,
        )  # fmt: skip
    if form == "data_base64":
        wire = {k: v for k, v in event.items() if k != "data"}
        wire["data_base64"] = base64.b64encode(orjson.dumps(event["data"])).decode()
        return OutgoingMessage(
            key, orjson.dumps(wire), event["id"], kind, event,
            content_type="application/cloudevents+json; charset=utf-8", form=form,
        )  # fmt: skip
    if form == "loose":
        wire = copy.deepcopy(event)
        wire.pop("datacontenttype", None)
        wire["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        wire["data"]["x_province_batch"] = {"seq": 7, "tags": ["late"]}
        if isinstance(wire["data"].get("record_file"), dict):
            wire["data"]["record_file"]["x_storage_class"] = "cold"
        return OutgoingMessage(
            key, orjson.dumps(wire), event["id"], kind, event,
            content_type='Application/CloudEvents+JSON; Charset="UTF-8"', form=form,
        )  # fmt: skip
    if form == "plain":
        return event_message(event, kind)
    raise ValueError(f"unknown form {form!r}")


def _synthetic_graduated(rng: random.Random) -> dict[str, Any]:
    """A well-formed graduation of a child nobody else knows about (to break on purpose)."""
    county = rng.choice(names.COUNTIES)
    gender = rng.choice("MF")
    birth = names.birth_date_for(rng, 2026)
    id_number = names.resident_id(rng, county, birth, gender)
    kindergarten = f"11{county}{rng.randrange(1, 100):02d}"
    number = "G" + id_number
    return {
        "specversion": "1.0",
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "source": f"/preschool/{county}/{kindergarten}",
        "type": TYPE_PREFIX + "child.graduated",
        "subject": number,
        "time": dt.datetime(2026, 7, 1, 10, tzinfo=dt.timezone(dt.timedelta(hours=8))).isoformat(),
        "datacontenttype": "application/json",
        "childseq": 1,
        "data": {
            "student_number": number,
            "child": {
                "name": names.random_name(rng, gender),
                "gender": gender,
                "birth_date": birth.isoformat(),
                "id_type": "resident_id",
                "id_number": id_number,
                "nationality": "CN",
            },
            "kindergarten_code": kindergarten,
            "county_code": county,
            "graduated_on": "2026-07-01",
            "entry_year": 2026,
            "destination_school_code": None,
            "record_file": {
                "uri": "http://127.0.0.1:8090/preschool/v1/record-files/missing/content",
                "sha256": "0" * 64,
                "size": 1,
                "media_type": "application/json",
            },
        },
    }


def malformed_message(rng: random.Random, kind: str) -> OutgoingMessage:
    """One message that is not an acceptable event, of the given kind."""
    event = _synthetic_graduated(rng)
    data = event["data"]
    if kind == "not_json":
        return OutgoingMessage("child.graduated", b"\x00{not json", event["id"], kind, None)
    if kind == "not_cloudevents":
        payload = {"student_number": data["student_number"], "event": "graduated"}
        return OutgoingMessage("child.graduated", orjson.dumps(payload), event["id"], kind, payload)
    if kind == "unknown_type":
        event["type"] = TYPE_PREFIX + "child.teleported"
    elif kind == "bad_check_character":
        number = data["student_number"]
        wrong = next(c for c in "0123456789X" if c != number[-1])
        data["student_number"] = event["subject"] = number[:-1] + wrong
        data["child"]["id_number"] = data["student_number"][1:]
    elif kind == "missing_field":
        del data["kindergarten_code"]
    elif kind == "bad_date":
        data["child"]["birth_date"] = f"{data['child']['birth_date'][:4]}-02-30"
    elif kind in NASTY_KINDS:
        return _nasty_message(event, kind)
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    return OutgoingMessage(routing_key(event), orjson.dumps(event), event["id"], kind, event)


def _nasty_message(event: dict[str, Any], kind: str) -> OutgoingMessage:
    """A message of one of NASTY_KINDS, built from a well-formed *event*."""
    key, event_id, data = routing_key(event), event["id"], event["data"]
    body: bytes | None = None
    if kind == "control_character":
        data["child"]["name"] = data["child"]["name"][:1] + "\u0000" + data["child"]["name"][1:]
        body = orjson.dumps(event)  # the name holds NUL (JSON: \u0000)
    elif kind == "deep_nesting":
        body = orjson.dumps(event)[:-1] + b',"x_nest":' + b"[" * 5000 + b"]" * 5000 + b"}"
    elif kind == "number_out_of_range":
        event["childseq"] = 2**31  # beyond the CloudEvents Integer range
    elif kind == "huge_number":
        body = orjson.dumps(event).replace(b'"size":', b'"size":1e999,"x_size":', 1)
    elif kind == "duplicate_key":
        body = orjson.dumps(event)[:-1] + b',"childseq":2}'
    elif kind == "lone_surrogate":
        body = orjson.dumps(event).replace(b'"name":"', b'"name":"\\ud800', 1)
    elif kind == "not_utf8":
        body = orjson.dumps(event).replace(b'"name":"', b'"name":"\xff\xfe', 1)
    elif kind == "other_charset":
        return replace(
            event_message(event, kind),
            content_type="application/cloudevents+json; charset=iso-8859-1",
        )
    elif kind == "data_and_data_base64":
        event["data_base64"] = base64.b64encode(orjson.dumps(data)).decode()
    elif kind == "data_not_object":
        event["data"] = [data]
    elif kind == "binary_missing_header":
        message = sdk_message(event, "sdk_binary", kind)
        headers = dict(message.headers or {})
        del headers["cloudEvents_subject"]
        return replace(message, headers=headers)
    elif kind == "binary_header_not_utf8":
        message = sdk_message(event, "sdk_binary", kind)
        odd = bytearray(b"\xff\xfe")  # a byte array: aio-pika writes no bytes headers
        return replace(message, headers={**(message.headers or {}), "cloudEvents_id": odd})
    elif kind == "binary_header_table":
        message = sdk_message(event, "sdk_binary", kind)
        headers = {**(message.headers or {}), "cloudEvents_childseq": {"value": 1}}
        return replace(message, headers=headers)
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    if body is None:
        body = orjson.dumps(event)
    return OutgoingMessage(key, body, event_id, kind, event)


def _malformed_kinds(malformed: int | Mapping[str, int]) -> list[str]:
    if isinstance(malformed, int):
        return [MALFORMED_KINDS[i % len(MALFORMED_KINDS)] for i in range(malformed)]
    return [kind for kind, count in malformed.items() for _ in range(count)]


def plan_messages(
    children_events: Cohort | Sequence[Sequence[dict[str, Any]]],
    *,
    duplicate_fraction: float = 0.0,
    shuffle_children: bool = False,
    interleave: bool = False,
    malformed: int | Mapping[str, int] = 0,
    forms: Mapping[str, float] | None = None,
    seed: int = 0,
) -> list[OutgoingMessage]:
    """Decide the messages and their order.

    Each child's events go out in childseq order unless `shuffle_children`; children go
    one after another unless `interleave` (a random merge). A `duplicate_fraction` of
    events is sent twice (same id), the copy later in that child's sequence. `malformed`
    (a count cycling through MALFORMED_KINDS, or kind → count) are mixed in at random.
    `forms` (form → share, see FORMS) writes that share of the messages in other forms of
    the same event; a duplicate may come in another form than its original.
    """
    rng = random.Random(seed)
    shares = sorted((forms or {}).items())

    def written(event: dict[str, Any], kind: str = "event") -> OutgoingMessage:
        if not shares:  # no draw: plans without forms stay as they were for a seed
            return event_message(event, kind)
        draw = rng.random()
        for form, share in shares:
            if draw < share:
                return sdk_message(event, form, kind)
            draw -= share
        return event_message(event, kind)

    if isinstance(children_events, Cohort):
        children_events = [child.events for child in children_events.children]
    queues: list[list[OutgoingMessage]] = []
    for events in children_events:
        queue = [written(e) for e in events]
        for event in events:
            if rng.random() < duplicate_fraction:
                first = next(i for i, m in enumerate(queue) if m.message_id == event["id"])
                at = rng.randrange(first + 1, len(queue) + 1)
                queue.insert(at, written(copy.deepcopy(event), "duplicate"))
        if shuffle_children:
            rng.shuffle(queue)
        queues.append(queue)
    if interleave:
        order = [i for i, queue in enumerate(queues) for _ in queue]
        rng.shuffle(order)
        cursors = [0] * len(queues)
        plan = []
        for i in order:
            plan.append(queues[i][cursors[i]])
            cursors[i] += 1
    else:
        plan = [message for queue in queues for message in queue]
    for kind in _malformed_kinds(malformed):
        plan.insert(rng.randrange(len(plan) + 1), malformed_message(rng, kind))
    return plan


class EventPublisher:
    """A confirmed publisher on the `preschool.events` topic exchange (declared durable)."""

    def __init__(self, amqp_url: str, *, exchange: str = EXCHANGE) -> None:
        self.amqp_url = amqp_url
        self.exchange_name = exchange
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def __aenter__(self) -> EventPublisher:
        # A cluster's nodes may be listed, comma-separated: the first that answers is used.
        urls = [url.strip() for url in self.amqp_url.split(",") if url.strip()]
        for i, url in enumerate(urls):
            try:
                self._connection = await aio_pika.connect(url)
                break
            except (OSError, aio_pika.exceptions.AMQPConnectionError):
                if i == len(urls) - 1:
                    raise
        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._exchange = None

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish in order, waiting for the broker's confirms window by window."""
        if self._exchange is None:
            raise RuntimeError("use `async with EventPublisher(...)`")
        exchange = self._exchange
        for start in range(0, len(messages), PUBLISH_WINDOW):
            window = messages[start : start + PUBLISH_WINDOW]
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            m.body,
                            content_type=m.content_type,
                            headers=m.headers,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            message_id=m.message_id,
                        ),
                        routing_key=m.routing_key,
                        mandatory=False,
                    )
                    for m in window
                )
            )


async def publish_cohort(
    amqp_url: str,
    children_events: Cohort | Sequence[Sequence[dict[str, Any]]],
    *,
    exchange: str = EXCHANGE,
    **plan_options: Any,
) -> list[OutgoingMessage]:
    """Plan (see `plan_messages`) and publish; return exactly what was published, in order."""
    plan = plan_messages(children_events, **plan_options)
    async with EventPublisher(amqp_url, exchange=exchange) as publisher:
        await publisher.publish(plan)
    return plan


async def seed_cohort(base_url: str, cohort: Cohort, *, batch_size: int = 200) -> None:
    """Seed the preschool side with the cohort and point each graduation at its file.

    Batches stay well under the request size limit (21 MiB) even with 50 KB files.

    Each graduated event's `record_file` claim is replaced by the simulator's answer
    (the URI then names this simulator's address).
    """
    url = base_url.rstrip("/") + "/_sim/preschool/children"
    async with aiohttp.ClientSession() as session:
        for start in range(0, len(cohort.children), batch_size):
            batch = cohort.children[start : start + batch_size]
            payload = orjson.dumps({"children": [child.preschool for child in batch]})
            async with session.post(
                url, data=io.BytesIO(payload), headers={"Content-Type": "application/json"}
            ) as response:
                if response.status != 200:
                    raise RuntimeError(f"seeding failed: {response.status} {await response.text()}")
                answers = (await response.json())["children"]
            for child, answer in zip(batch, answers, strict=True):
                if answer["record_file"] is None:
                    continue
                for event in child.events:
                    if event["type"] == TYPE_PREFIX + "child.graduated":
                        event["data"]["record_file"] = dict(answer["record_file"])
