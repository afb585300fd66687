"""Publishing preschool events to RabbitMQ as events.md describes, with optional mischief.

`plan_messages` decides what goes out (duplicates, shuffled and interleaved order,
malformed messages) without any I/O; `EventPublisher` sends with publisher confirms;
`publish_cohort` does both. `seed_cohort` prepares the preschool side over HTTP.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import io
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
# Confirms are awaited per window: large enough to pipeline, small enough to keep order.
PUBLISH_WINDOW = 100


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to publish (or published): its routing key, body and why it exists."""

    routing_key: str
    body: bytes
    message_id: str
    kind: str  # "event", "duplicate" or one of MALFORMED_KINDS
    event: dict[str, Any] | None  # the event (or the malformed JSON payload), if JSON


def routing_key(event: Mapping[str, Any]) -> str:
    """The event type without its `cn.edu.preschool.` prefix."""
    return str(event["type"]).removeprefix(TYPE_PREFIX)


def event_message(event: dict[str, Any], kind: str = "event") -> OutgoingMessage:
    """The message carrying one well-formed event."""
    return OutgoingMessage(routing_key(event), orjson.dumps(event), event["id"], kind, event)


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
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    return OutgoingMessage(routing_key(event), orjson.dumps(event), event["id"], kind, event)


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
    seed: int = 0,
) -> list[OutgoingMessage]:
    """Decide the messages and their order.

    Each child's events go out in childseq order unless `shuffle_children`; children go
    one after another unless `interleave` (a random merge). A `duplicate_fraction` of
    events is sent twice (same id), the copy later in that child's sequence. `malformed`
    (a count cycling through MALFORMED_KINDS, or kind → count) are mixed in at random.
    """
    rng = random.Random(seed)
    if isinstance(children_events, Cohort):
        children_events = [child.events for child in children_events.children]
    queues: list[list[OutgoingMessage]] = []
    for events in children_events:
        queue = [event_message(e) for e in events]
        for event in events:
            if rng.random() < duplicate_fraction:
                at = rng.randrange(queue.index(event_message(event)) + 1, len(queue) + 1)
                queue.insert(at, event_message(copy.deepcopy(event), "duplicate"))
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
                            content_type=CONTENT_TYPE,
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
