"""Configuration from the environment (12-factor), with safe defaults for localhost."""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of a bridge instance. Built by entry points only, never at import."""

    model_config = SettingsConfigDict(env_prefix="BRIDGE_", extra="ignore")

    # Deployment contract: these names are fixed. A cluster (issue #20): amqp_url may list
    # its nodes, comma-separated; database_url may be a libpq multi-host URL.
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/xueji"
    registry_url: str = "http://127.0.0.1:8090/registry"
    registry_token: str = "dev-registry-token"
    preschool_url: str = "http://127.0.0.1:8090/preschool"
    preschool_token: str = "dev-preschool-token"
    http_port: int = 8080

    http_host: str = "127.0.0.1"
    instance_id: str = Field(default_factory=socket.gethostname)
    events_exchange: str = "preschool.events"
    queue_prefix: str = "xueji.bridge"
    # In flight: a summer's cohort arrives in weeks, and durable writes are group-committed,
    # so many children at once cost little more than one (bench/handoff.py).
    prefetch: int = 256
    delivery_limit: int = 20
    # Replicas of each quorum queue at its creation; RabbitMQ caps it at the cluster's size.
    quorum_initial_group_size: int = 3
    # A delivery waits this long for the database before it is handed back (under the
    # broker's consumer_timeout, 30 minutes by default).
    database_hold_s: float = 900.0
    # Unexpected failures of one child's drives (at one childseq) before it is set aside
    # as internal_error; retried with the durable backoff until then.
    drive_failure_limit: int = 8
    handoff_concurrency: int = 128
    poll_interval_s: float = 1.0
    lease_s: float = 60.0
    db_pool_size: int = 20
    registry_connect_timeout_s: float = 3.0
    registry_read_timeout_s: float = 10.0
    registry_total_timeout_s: float = 30.0
    registry_attempts: int = 3
    registry_max_inline_wait_s: float = 2.0
    registry_connections: int = 64
    retry_base_s: float = 1.0
    retry_max_s: float = 600.0
    log_level: str = "INFO"
    event_loop: Literal["asyncio", "uvloop"] = "asyncio"  # uvloop needs the package installed

    # Reconciliation (issue #6). Interval 0: only on demand. Entry years: comma-separated;
    # empty means the cohort starting school this calendar year.
    reconcile_interval_s: float = 0.0
    reconcile_entry_years: str = ""
    reconcile_page_size: int = 5000
    reconcile_max_repairs: int = 5000
    reconcile_keep_runs: int = 20
    overdue_working_days: int = 10
    file_not_pulled_working_days: int = 5
    not_arrived_working_days: int = 5
    term_start: str = "09-01"
    console_session_hours: float = 8.0
    # Refused attempts (401, 403, another school's list) written to the audit log per minute:
    # per source address and in all; the rest are counted in xueji_refusals_total only.
    refusal_audit_per_source: int = 30
    refusal_audit_in_all: int = 600

    # Record files at rest (issue #19). Key-encryption keys as "id:base64key,..." (32-byte
    # AES keys; the first, or file_key_active, wraps new files), or a file holding them.
    # No default: without a key the bridge does not start.
    file_keys: str | None = Field(default=None, repr=False)
    file_keys_file: str | None = None
    file_key_active: str | None = None
    # Record files and the children's personal data are erased this long after the
    # hand-over completed (the child enrolled) or the cancellation took effect.
    file_retention_days: float = 90.0
    file_purge_interval_s: float = 3600.0  # 0: only by `xueji files purge`
