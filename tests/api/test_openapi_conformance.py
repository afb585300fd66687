"""schemathesis against the served OpenAPI document: no server errors, every answer as described.

The API runs in-process on loopback; schemathesis (synchronous) drives it from a thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.conftest import AMQP_URL, PG_ADMIN_URL
from tests.support.school_api import SCHOOL, school_api_env

pytestmark = pytest.mark.live

EXAMPLES = 15
CONFIG = {
    "checks": {
        # Rules the schema cannot state: an arrival date in the future (422), a cursor this
        # API did not give (400). Everything else valid by the schema must be accepted.
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "304", "400", "401", "403", "404", "409", "416", "422"]
        },
    },
}


def never_sent(case: schemathesis.Case) -> bool:
    """A query parameter valued [] or {} is dropped by the HTTP client: the server would
    see a valid request, and schemathesis would call accepting it a failure."""
    return any(value in ([], {}) for value in (case.query or {}).values())


def run_schemathesis(url: str, token: str, numbers: list[str]) -> tuple[list[str], int]:
    """Every operation, positive and negative data, random and real identifiers.

    Returns the failures and how many requests were made.
    """
    config = schemathesis.Config.from_dict(CONFIG)
    schema = schemathesis.openapi.from_url(f"{url}/v1/openapi.json", config=config)
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    calls = [0]
    for result in schema.get_all_operations():
        operation = result.ok()
        names = {p.name for p in operation.path_parameters}
        overrides: list[dict[str, Any] | None] = [None]
        if "student_number" in names:
            overrides += [{"student_number": n} for n in numbers]
        if "school_code" in names:
            overrides.append({"school_code": SCHOOL})
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for path_parameters in overrides:
                strategy = operation.as_strategy(
                    generation_mode=mode, path_parameters=path_parameters
                )

                @given(case=strategy)
                @settings(
                    max_examples=EXAMPLES, deadline=None, database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )  # fmt: skip
                def check(case: schemathesis.Case) -> None:
                    if never_sent(case):
                        return
                    calls[0] += 1
                    case.call_and_validate(base_url=url, headers=headers)

                try:
                    check()
                except (Exception, BaseExceptionGroup) as exc:  # collect all, report all
                    failures.append(f"{operation.label} [{mode.value}]: {exc}")
    return failures, calls[0]


@pytest.mark.parametrize("who", ["school", "county", "province"])
async def test_every_answer_matches_the_openapi_document(who: str) -> None:
    async with school_api_env(PG_ADMIN_URL, AMQP_URL, size=10, seed=51) as env:
        numbers = [c.final_student_number for c in env.children_of(SCHOOL)[:2]]
        failures, calls = await asyncio.to_thread(
            run_schemathesis, env.url, env.tokens[who], numbers
        )
    assert failures == [], "\n\n".join(f[:3000] for f in failures)
    assert calls > 200  # the run really exercised the API
