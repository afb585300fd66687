"""One handed-over cohort behind a live API, shared by the read-only school-API tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import AMQP_URL, PG_ADMIN_URL
from tests.support.school_api import SchoolApiEnv, school_api_env


@pytest.fixture(scope="package")
async def api_env() -> AsyncIterator[SchoolApiEnv]:
    """Simulator, bridge and API with 20 children handed over and tokens of every kind."""
    async with school_api_env(PG_ADMIN_URL, AMQP_URL) as env:
        yield env
