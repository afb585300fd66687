"""Publishing what aio-pika refuses to write: headers and properties as raw AMQP bytes.

RabbitMQ relays header names and short strings that are not UTF-8, timestamps past the
year 9999 and header tables nested thousands deep; a publisher with another client can
send them. These helpers write them with aio-pika by swapping pamqp's encoders for the one
publish.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator

import aio_pika
from pamqp import encode


class RawTable(bytes):
    """A header table's bytes, written as they are."""


class RawText(bytes):
    """A short string's bytes (content_type, message_id, ...), written as they are."""


def entry(name: bytes, tag: bytes, value: bytes) -> bytes:
    """One table entry: name, type tag, encoded value."""
    return struct.pack("B", len(name)) + name + tag + value


def long_string(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def timestamp(seconds: int) -> bytes:
    return struct.pack(">Q", seconds)


def table(*entries: bytes) -> RawTable:
    return RawTable(b"".join(entries))


def nested(depth: int) -> RawTable:
    """A table holding a table holding ... *depth* levels down."""
    inner = b""
    for _ in range(depth):
        inner = entry(b"a", b"F", struct.pack(">I", len(inner)) + inner)
    return RawTable(inner)


@contextlib.contextmanager
def raw_encoders() -> Iterator[None]:
    """While inside, RawTable and RawText values are written byte for byte."""
    plain_table, plain_text = encode.METHODS["table"], encode.METHODS["shortstr"]

    def any_table(value: object) -> bytes:
        if isinstance(value, RawTable):
            return struct.pack(">I", len(value)) + value
        return plain_table(value)

    def any_text(value: object) -> bytes:
        if isinstance(value, RawText):
            return struct.pack("B", len(value)) + value
        return plain_text(value)

    encode.METHODS["table"], encode.METHODS["shortstr"] = any_table, any_text
    try:
        yield
    finally:
        encode.METHODS["table"], encode.METHODS["shortstr"] = plain_table, plain_text


async def publish_raw(
    amqp_url: str, exchange: str, routing_key: str, messages: list[aio_pika.Message]
) -> None:
    """Publish *messages* (confirmed), their raw parts written as they are."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange)
        with raw_encoders():
            for message in messages:
                await target.publish(message, routing_key=routing_key)
