"""One HTTP exchange with a registry: time-outs, error translation, retries, call log.

Library errors stop here: callers see RegistryUnavailable / RegistryUnauthorized or an
answer with its status, never an aiohttp exception.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from bridge.adapters.call_journal import RegistryCall, note_call
from bridge.errors import RETRYABLE, RegistryUnauthorized, RegistryUnavailable
from bridge.metrics import Metrics

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


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

        def _wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            jitter = wait_random_exponential(multiplier=0.1, max=self._budget.max_wait_s)(state)
            after = getattr(exc, "retry_after_s", None) or 0.0
            return max(jitter, after)

        def _retryable(exc: BaseException) -> bool:
            after = getattr(exc, "retry_after_s", None) or 0.0
            return isinstance(exc, RETRYABLE) and after <= self._budget.max_wait_s

        def _count_retry(state: RetryCallState) -> None:
            self._metrics.retries.labels(operation, "in_call").inc()

        retrying = AsyncRetrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self._budget.attempts),
            wait=_wait,
            before_sleep=_count_retry,
            reraise=True,
        )
        body = orjson.dumps(json) if json is not None else data
        all_headers = {**self._auth, **(headers or {})}
        if json is not None:
            all_headers["Content-Type"] = "application/json"
        async for attempt in retrying:
            with attempt:
                return await self._once(operation, method, path, body, all_headers, params, raw)
        raise AssertionError("unreachable")

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
                    )
                if status in (401, 403):
                    outcome = "unauthorized"
                    raise RegistryUnauthorized(f"{operation}: HTTP {status}, check the token")
                parsed: Any = payload if raw and status < 300 else _json_or_none(payload)
                return Answer(status, parsed, dict(resp.headers))
        except (TimeoutError, aiohttp.ClientError) as exc:
            outcome = "transport_error"
            raise RegistryUnavailable(f"{operation}: {type(exc).__name__}") from None
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
