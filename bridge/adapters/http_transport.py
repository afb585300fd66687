"""One HTTP exchange with a registry: time-outs, error translation, retries, call log.

Library errors stop here: callers see RegistryUnavailable / RegistryUnauthorized or an
answer with its status, never an aiohttp exception.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson
from pydantic import TypeAdapter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from bridge.errors import RETRYABLE, BridgeError, RegistryUnauthorized, RegistryUnavailable
from bridge.metrics import Metrics
from bridge.services.call_journal import RegistryCall, note_call
from schemas.registry import parse_page

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """How hard one call tries before the hand-over falls back to a durable delay."""

    attempts: int = 3
    max_wait_s: float = 2.0  # longer waits belong in the ledger, not in a coroutine


@dataclass(frozen=True, slots=True)
class Answer:
    """A non-transient HTTP answer."""

    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def code(self) -> str | None:
        """The contract's machine code of an error body, if any."""
        return self.body.get("code") if isinstance(self.body, dict) else None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP-date; the jittered backoff stands in for it


class RegistryTransport:
    """Authenticated JSON/bytes exchanges with one registry's base URL."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        *,
        metrics: Metrics,
        timeout: aiohttp.ClientTimeout,
        budget: RetryBudget = RetryBudget(),
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {token}"}
        self._metrics = metrics
        self._timeout = timeout
        self._budget = budget

    def url(self, path: str) -> str:
        """Absolute URL of *path* under this registry."""
        return path if path.startswith("http") else f"{self._base}{path}"

    async def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        raw: bool = False,
    ) -> Answer:
        """Make the exchange, retrying passing failures within the budget."""
        body = orjson.dumps(json) if json is not None else data
        all_headers = {**self._auth, **(headers or {})}
        if json is not None:
            all_headers["Content-Type"] = "application/json"

        async def once() -> Answer:
            return await self._once(operation, method, path, body, all_headers, params, raw)

        try:
            return await once()
        except RETRYABLE as exc:
            if self._budget.attempts <= 1 or not self._retryable(exc):
                raise
            failure: BaseException = exc
        # Most calls succeed at once: the retry machinery is built only for the others.
        return await self._retry(operation, failure, once)

    async def _retry(
        self, operation: str, failure: BaseException, once: Callable[[], Awaitable[Answer]]
    ) -> Answer:
        """Attempts 2..n of a call whose first attempt met *failure*."""

        def _wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self._backoff_s(state.attempt_number + 1, exc)

        def _count_retry(state: RetryCallState | None = None) -> None:
            self._metrics.retries.labels(operation, "in_call").inc()

        _count_retry()
        await asyncio.sleep(self._backoff_s(1, failure))
        retrying = AsyncRetrying(
            retry=retry_if_exception(self._retryable),
            stop=stop_after_attempt(self._budget.attempts - 1),
            wait=_wait,
            before_sleep=_count_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await once()
        raise AssertionError("unreachable")

    def _backoff_s(self, failures: int, exc: BaseException | None) -> float:
        """Full jitter after *failures* failed attempts, and never less than Retry-After."""
        jitter = random.uniform(0, min(self._budget.max_wait_s, 0.1 * 2**failures))
        return max(jitter, getattr(exc, "retry_after_s", None) or 0.0)

    def _retryable(self, exc: BaseException) -> bool:
        after = getattr(exc, "retry_after_s", None) or 0.0
        return isinstance(exc, RETRYABLE) and after <= self._budget.max_wait_s

    async def _once(
        self,
        operation: str,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        raw: bool,
    ) -> Answer:
        started = time.perf_counter()
        status: int | None = None
        outcome = "ok"
        try:
            async with self._session.request(
                method, self.url(path), data=body, headers=headers, params=params,
                timeout=self._timeout,
            ) as resp:  # fmt: skip
                status = resp.status
                payload = await resp.read()
                if status in TRANSIENT_STATUSES:
                    outcome = "transient"
                    raise RegistryUnavailable(
                        f"{operation}: HTTP {status}",
                        retry_after_s=_retry_after(resp.headers.get("Retry-After")),
                        url=self._base,
                    )
                if status in (401, 403):
                    outcome = "unauthorized"
                    raise RegistryUnauthorized(
                        f"{operation}: HTTP {status}, check the token", url=self._base
                    )
                parsed: Any = payload if raw and status < 300 else _json_or_none(payload)
                return Answer(status, parsed, dict(resp.headers))
        except (TimeoutError, aiohttp.ClientError) as exc:
            outcome = "transport_error"
            raise RegistryUnavailable(
                f"{operation}: {type(exc).__name__}", url=self._base
            ) from None
        finally:
            duration_ms = int((time.perf_counter() - started) * 1000)
            label = str(status) if status is not None else outcome
            self._metrics.registry_calls.labels(operation, label).inc()
            note_call(RegistryCall(operation, status, outcome, duration_ms))


def _json_or_none(payload: bytes) -> Any:
    if not payload:
        return None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


async def fetch_page(
    transport: RegistryTransport,
    operation: str,
    path: str,
    cursor: str | None,
    limit: int,
    page: TypeAdapter[P],
    refused: Callable[[str, Answer], BridgeError],
) -> P:
    """One page of a paged listing (A2, B8), validated from the raw bytes: no dict per
    child in between. An answer that is not a page is *refused*'s error."""
    params: dict[str, Any] = {"limit": str(limit)}
    if cursor:
        params["cursor"] = cursor
    answer = await transport.call(operation, "GET", path, params=params, raw=True)
    if answer.status != 200 or not isinstance(answer.body, bytes):
        raise refused(operation, answer)
    return parse_page(page, operation, answer.body)
