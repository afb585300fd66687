"""The bridge's baselines, each run as its own process: what the hardware gives with no ledger.

- ``pipeline`` (a): the same contract I/O per child as the bridge, with no durability:
  consume, GET the record file (checked against its claim), PUT the intake, PUT the
  file, ack, with bounded concurrency.
- ``consume`` (b): a bare aio-pika loop that consumes and acks, nothing else.

``python -m bench.baselines pipeline|consume --queue Q --n N [...]``: exits after N messages
and prints one JSON line with its own figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import sys
import time
from typing import Any

import aio_pika
import aiohttp
import orjson
from aio_pika.abc import AbstractIncomingMessage

TOKENS = {"registry": "dev-registry-token", "preschool": "dev-preschool-token"}


class Done:
    """Counts finished messages and wakes the main task at the target."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.failed = 0
        self.event = asyncio.Event()

    def one(self) -> None:
        self.count += 1
        if self.count >= self.target:
            self.event.set()


async def _hand_over(
    session: aiohttp.ClientSession, registry_url: str, event: dict[str, Any]
) -> None:
    data = event["data"]
    claim = data["record_file"]
    auth_pre = {"Authorization": f"Bearer {TOKENS['preschool']}"}
    async with session.get(claim["uri"], headers=auth_pre) as resp:
        resp.raise_for_status()
        content = await resp.read()
    digest = hashlib.sha256(content).digest()
    if len(content) != claim["size"] or digest.hex() != claim["sha256"]:
        raise ValueError("record file does not match its claim")
    number = data["student_number"]
    body = {
        "entry_year": data["entry_year"],
        "child": data["child"],
        "kindergarten_code": data["kindergarten_code"],
        "graduated_on": data["graduated_on"],
        "requested_school_code": data["destination_school_code"],
        "record_file": {k: claim[k] for k in ("sha256", "size", "media_type")},
    }
    auth = {"Authorization": f"Bearer {TOKENS['registry']}"}
    async with session.put(
        f"{registry_url}/v1/students/{number}/intake",
        data=orjson.dumps(body),
        headers={**auth, "Content-Type": "application/json", "Idempotency-Key": event["id"]},
    ) as resp:
        if resp.status not in (200, 201):
            raise ValueError(f"intake answered {resp.status}")
        await resp.read()
    async with session.put(
        f"{registry_url}/v1/students/{number}/record-file",
        data=content,
        headers={
            **auth,
            "Content-Type": claim["media_type"],
            "Content-Digest": f"sha-256=:{base64.b64encode(digest).decode()}:",
        },
    ) as resp:
        if resp.status != 204:
            raise ValueError(f"record-file answered {resp.status}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    done = Done(args.n)
    connection = await aio_pika.connect_robust(args.amqp_url)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit_per_host=args.connections))
    limit = asyncio.Semaphore(args.concurrency)
    async with connection, session:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=args.prefetch)
        queue = await channel.get_queue(args.queue, ensure=False)

        async def consume_only(message: AbstractIncomingMessage) -> None:
            await message.ack()
            done.one()

        async def pipeline(message: AbstractIncomingMessage) -> None:
            async with limit:
                try:
                    await _hand_over(session, args.registry_url, orjson.loads(message.body))
                except Exception:
                    done.failed += 1
                    await message.nack(requeue=True)
                    return
                await message.ack()
                done.one()

        print("ready", flush=True)
        started, cpu_started = time.perf_counter(), time.process_time()
        await queue.consume(consume_only if args.mode == "consume" else pipeline)
        await done.event.wait()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "mode": args.mode, "n": done.count, "failed": done.failed, "elapsed_s": elapsed,
        "cpu_s": cpu,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.baselines")
    parser.add_argument("mode", choices=("pipeline", "consume"))
    parser.add_argument("--queue", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--registry-url", default="http://127.0.0.1:8090/registry")
    parser.add_argument("--prefetch", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args(argv)
    if args.uvloop:
        import uvloop

        result = uvloop.run(run(args))
    else:
        result = asyncio.run(run(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
