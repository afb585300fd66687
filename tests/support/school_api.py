"""A bridge with a handed-over cohort and its HTTP API on loopback, plus tokens of every kind."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiohttp
import asyncpg
from aiohttp import web
from multidict import CIMultiDict

from bridge.adapters.file_crypto import new_key_line
from bridge.api.app import create_app
from bridge.api.server import BridgeRunner
from bridge.bootstrap import Bridge, running_bridge
from bridge.domain.access import Role
from bridge.services.sealing import seal_unused_tokens
from bridge.settings import Settings
from simulator.cohort import Cohort, CohortChild, generate_cohort
from simulator.publisher import publish_cohort, seed_cohort
from tests.support.sim import SimulatorHandle
from tests.support.waiting import eventually

# The cohort starts school this year, so that an arrival dated today is plausible.
ENTRY_YEAR = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).year
COUNTY = "110105"
OTHER_COUNTY = "310104"
SCHOOL = f"21{COUNTY}91"
SAME_COUNTY_SCHOOL = f"21{COUNTY}92"
FAR_SCHOOL = f"21{OTHER_COUNTY}93"
# Valid in form, held by nobody: unknown children must answer like out-of-scope ones.
UNKNOWN_NUMBER = "G11010520190307001X"
BAD_TOKEN = "xj_tok_000000000000_not-a-real-secret"


@dataclass
class Answer:
    """An HTTP answer, read whole (tests only)."""

    status: int
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        import orjson

        return orjson.loads(self.body)


@dataclass
class SchoolApiEnv:
    """Everything a school-API test needs."""

    url: str
    bridge: Bridge
    simulator: SimulatorHandle
    cohort: Cohort
    tokens: dict[str, str] = field(default_factory=dict)
    token_ids: dict[str, str] = field(default_factory=dict)

    def children_of(self, school_code: str) -> list[CohortChild]:
        return [
            c
            for c in self.cohort.children
            if graduation(c)["destination_school_code"] == school_code
        ]

    async def call(
        self, method: str, path: str, who: str | None = None, *,
        headers: dict[str, str] | None = None, **kwargs: Any,
    ) -> Answer:  # fmt: skip
        """Call the API as *who* (a key of tokens, or None for no token)."""
        sent = dict(headers or {})
        if who is not None:
            sent["Authorization"] = f"Bearer {self.tokens.get(who, who)}"
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(method, self.url + path, headers=sent, **kwargs) as resp,
        ):
            return Answer(resp.status, CIMultiDict(resp.headers), await resp.read())


def arrival_date() -> dt.date:
    """Today in China: an arrival date the bridge accepts whenever the tests run."""
    return dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()


def graduation(child: CohortChild) -> dict[str, Any]:
    """The data of the child's graduated event."""
    return next(e["data"] for e in child.events if e["type"].endswith("child.graduated"))


def place(cohort: Cohort) -> None:
    """Admit children to known schools: most to SCHOOL, some to its neighbour, one far away."""
    for i, child in enumerate(cohort.children):
        data = graduation(child)
        if i < 8:
            data["county_code"], data["destination_school_code"] = COUNTY, SCHOOL
        elif i < 11:
            data["county_code"], data["destination_school_code"] = COUNTY, SAME_COUNTY_SCHOOL
        elif i == 11:
            data["county_code"], data["destination_school_code"] = OTHER_COUNTY, FAR_SCHOOL


async def settled(bridge: Bridge, children: int) -> bool:
    counts = await bridge.ledger.phase_counts()
    return sum(counts.values()) >= children and await bridge.ledger.pending_work() == 0


def settings_for(database_url: str, simulator_url: str, amqp_url: str, tag: str) -> Settings:
    return Settings(
        database_url=database_url, amqp_url=amqp_url,
        registry_url=f"{simulator_url}/registry", preschool_url=f"{simulator_url}/preschool",
        events_exchange=f"preschool.events.test-{tag}", queue_prefix=f"xueji.test-{tag}",
        instance_id=f"test-{tag}", poll_interval_s=0.2, retry_base_s=0.2, retry_max_s=2.0,
        registry_read_timeout_s=2.0, registry_total_timeout_s=5.0,
        registry_max_inline_wait_s=0.5, http_port=0, file_keys=new_key_line(f"test-{tag}"),
        # Every test calls from 127.0.0.1: the bound on audited refusals is tested on its own.
        refusal_audit_per_source=100_000, refusal_audit_in_all=100_000,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def serving(bridge: Bridge) -> AsyncIterator[str]:
    """The bridge's HTTP API on a loopback port; yields its base URL."""
    async with serving_app(create_app(bridge.use_cases)) as url:
        yield url


@contextlib.asynccontextmanager
async def serving_app(app: web.Application) -> AsyncIterator[str]:
    """*app* on a loopback port; yields its base URL."""
    # No access log: request paths carry student numbers, which hold identity numbers.
    runner = BridgeRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def issue_tokens(bridge: Bridge) -> tuple[dict[str, str], dict[str, str]]:
    """A token per kind of caller the access matrix knows; one of them sealed."""
    kinds = {
        "school": (Role.SCHOOL, {"school_code": SCHOOL}),
        "other_school": (Role.SCHOOL, {"school_code": SAME_COUNTY_SCHOOL}),
        "county": (Role.COUNTY, {"county_code": COUNTY}),
        "other_county": (Role.COUNTY, {"county_code": OTHER_COUNTY}),
        "province": (Role.PROVINCE, {}),
        "sealed": (Role.SCHOOL, {"school_code": SCHOOL}),
    }
    tokens, ids = {}, {}
    for name, (role, scope) in kinds.items():
        issued = await bridge.tokens.issue(role, label=f"test {name}", **scope)
        tokens[name], ids[name] = issued.token, issued.token_id
    await bridge.pool.execute(
        "UPDATE api_tokens SET created_at = now() - interval '200 days',"
        " last_used_at = now() - interval '181 days' WHERE token_id = $1",
        ids["sealed"],
    )
    sealed = await seal_unused_tokens(bridge.tokens, bridge.audit)
    assert sealed == [ids["sealed"]]
    tokens["bad"] = BAD_TOKEN
    return tokens, ids


async def _create_db(admin_url: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


async def _drop_db(admin_url: str, url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


async def _drop_amqp(amqp_url: str, settings: Settings) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for queue in (f"{settings.queue_prefix}.events", f"{settings.queue_prefix}.parked"):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue)
        for exchange in (settings.events_exchange, f"{settings.queue_prefix}.parked"):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(exchange)


@contextlib.asynccontextmanager
async def school_api_env(
    admin_url: str, amqp_url: str, *, size: int = 20, seed: int = 31
) -> AsyncIterator[SchoolApiEnv]:
    """Simulator, bridge and API on loopback, with a cohort handed over and tokens issued."""
    from simulator.app import start_simulator
    from simulator.config import SimConfig

    tag = uuid.uuid4().hex[:10]
    sim_db = await _create_db(admin_url, "xueji_sim_api")
    bridge_db = await _create_db(admin_url, "xueji_api")
    runner, sim_url = await start_simulator(SimConfig(port=0, database_url=sim_db))
    settings = settings_for(bridge_db, sim_url, amqp_url, tag)
    try:
        cohort = generate_cohort(ENTRY_YEAR, size, seed=seed, mix={"graduated": 1.0})
        place(cohort)
        await seed_cohort(sim_url, cohort)
        async with running_bridge(settings) as bridge:
            await publish_cohort(amqp_url, cohort, exchange=settings.events_exchange)
            await eventually(lambda: settled(bridge, size), bool, timeout_s=60, what="settled")
            async with serving(bridge) as url:
                env = SchoolApiEnv(url, bridge, SimulatorHandle(sim_url), cohort)
                env.tokens, env.token_ids = await issue_tokens(bridge)
                yield env
    finally:
        await runner.cleanup()
        await _drop_amqp(amqp_url, settings)
        await _drop_db(admin_url, bridge_db)
        await _drop_db(admin_url, sim_db)


class LogScan(logging.Handler):
    """Keeps every formatted log line (with tracebacks) for a scan after the test."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def leaks(self, secrets: list[str]) -> list[str]:
        return [line for line in self.lines for s in secrets if s and s in line]


@contextlib.contextmanager
def scanning_logs() -> Iterator[LogScan]:
    """Capture all loggers at DEBUG for the duration."""
    handler = LogScan()
    root = logging.getLogger()
    # The AMQP client dumps whole frames (message bodies) at DEBUG; `xueji run` keeps it
    # at WARNING (bridge.cli), and so does the scan: everything else is seen at DEBUG.
    quiet = {name: logging.getLogger(name).level for name in ("aiormq", "aio_pika")}
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for name, old in quiet.items():
            logging.getLogger(name).setLevel(old)


def identities(cohort: Cohort) -> list[str]:
    """Every child's name, identity number and student numbers (a G number holds the
    identity number): what no log line may hold."""
    found = []
    for child in cohort.children:
        for event in child.events:
            found.append(event["subject"])
            data = event["data"]
            found += [data[k] for k in ("student_number", "new_student_number",
                                         "previous_student_number") if data.get(k)]  # fmt: skip
            person = data.get("child")
            if person:
                found.append(person["name"])
                if person.get("id_number"):
                    found.append(person["id_number"])
    return sorted(set(found))
