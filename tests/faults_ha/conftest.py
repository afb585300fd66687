"""Engines of the HA suite, each started by the test that needs it and torn down after."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults_ha.engines import require_engines
from tests.faults_ha.postgres_pair import PostgresPair
from tests.faults_ha.rabbit_cluster import RabbitCluster


def _folder(prefix: str) -> Path:
    # Under /tmp itself: the servers' users must reach it (pytest's tmp_path is root's).
    return Path(tempfile.mkdtemp(prefix=prefix))


@pytest.fixture
async def rabbit_cluster() -> AsyncIterator[RabbitCluster]:
    """Three RabbitMQ nodes clustered on ports of their own."""
    require_engines()
    async with RabbitCluster(_folder("xueji-ha-rabbit-")) as cluster:
        yield cluster


@pytest.fixture
async def postgres_pair() -> AsyncIterator[PostgresPair]:
    """A PostgreSQL primary with a synchronous standby, on ports of their own."""
    require_engines()
    async with PostgresPair(_folder("xueji-ha-pg-"), synchronous=True) as pair:
        yield pair


@pytest.fixture
async def postgres_pair_async() -> AsyncIterator[PostgresPair]:
    """A PostgreSQL primary with an asynchronous standby, on ports of their own."""
    require_engines()
    async with PostgresPair(_folder("xueji-ha-pg-"), synchronous=False) as pair:
        yield pair
