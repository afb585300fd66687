"""The simulator's settings: a typed object built from the environment by entry points only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/xueji_sim"


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """Where the simulator listens, where it keeps its state and which tokens it accepts."""

    host: str = "127.0.0.1"
    port: int = 8090
    database_url: str = DEFAULT_DATABASE_URL
    # Base of the absolute record-file URIs handed out by the preschool side; None means
    # "the address actually bound" (so port 0 in tests still yields fetchable URIs).
    public_url: str | None = None
    registry_token: str = "dev-registry-token"
    preschool_token: str = "dev-preschool-token"
    db_pool_max: int = 10
    # Admin endpoints answer loopback only, unless the simulator sits on a private
    # network with its clients (docker compose): then SIM_ADMIN_OPEN=1.
    admin_open: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SimConfig:
        """Build the settings from `SIM_*` variables, with localhost defaults."""
        env = os.environ if env is None else env
        public_url = env.get("SIM_PUBLIC_URL")
        return cls(
            host=env.get("SIM_HOST", "127.0.0.1"),
            port=int(env.get("SIM_PORT", "8090")),
            database_url=env.get("SIM_DATABASE_URL", DEFAULT_DATABASE_URL),
            public_url=public_url.rstrip("/") if public_url else None,
            registry_token=env.get("SIM_REGISTRY_TOKEN", "dev-registry-token"),
            preschool_token=env.get("SIM_PRESCHOOL_TOKEN", "dev-preschool-token"),
            db_pool_max=int(env.get("SIM_DB_POOL_MAX", "10")),
            admin_open=env.get("SIM_ADMIN_OPEN", "") in ("1", "true", "yes"),
        )
