"""Prometheus metrics of one bridge process (one registry, built by the composition root)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Every metric the bridge exports; labels carry no personal data."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "xueji_events_total", "Events consumed, by type and outcome",
            ["type", "outcome"], registry=self.registry,
        )  # fmt: skip
        self.registry_calls = Counter(
            "xueji_registry_calls_total", "Calls to the registries, by operation and status",
            ["operation", "status"], registry=self.registry,
        )  # fmt: skip
        self.retries = Counter(
            "xueji_retries_total", "Retries of registry calls, by operation and kind",
            ["operation", "kind"], registry=self.registry,
        )  # fmt: skip
        self.set_aside = Counter(
            "xueji_set_aside_total", "Hand-overs set aside for an operator, by reason",
            ["reason"], registry=self.registry,
        )  # fmt: skip
        self.parked = Counter(
            "xueji_parked_messages_total", "Messages parked as not-an-event, by reason code",
            ["reason"], registry=self.registry,
        )  # fmt: skip
        self.parked_unrecorded = Counter(
            "xueji_parked_unrecorded_total",
            "Parked messages PostgreSQL refused, kept in the unrecorded queue instead",
            registry=self.registry,
        )  # fmt: skip
        self.drive_failures = Counter(
            "xueji_drive_failures_total",
            "Drives that failed unexpectedly, by what became of the child (retry, set_aside)",
            ["outcome"], registry=self.registry,
        )  # fmt: skip
        self.consumers_paused = Gauge(
            "xueji_consumers_paused", "1 while the consumers wait for the database to answer",
            registry=self.registry,
        )  # fmt: skip
        self.handoffs = Gauge(
            "xueji_handoffs", "Hand-overs by phase (read from the ledger at scrape time)",
            ["phase"], registry=self.registry,
        )  # fmt: skip
        self.batch_rows = Histogram(
            "xueji_ledger_batch_rows", "Rows per group-committed ledger statement, by writer",
            ["writer"], buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry,
        )  # fmt: skip
        self.deferrals_expired = Gauge(
            "xueji_deferrals_expired", "Deferred children whose deferral has run out",
            registry=self.registry,
        )  # fmt: skip
        self.file_integrity_failures = Counter(
            "xueji_record_file_integrity_failures_total",
            "Stored record files that failed authentication, by where it was found",
            ["where"], registry=self.registry,
        )  # fmt: skip
        self.refusals = Counter(
            "xueji_refusals_total",
            "Refused attempts (401, 403, another school's list), by status and whether the"
            " audit log took them (no: past BRIDGE_REFUSAL_AUDIT_* for the minute)",
            ["status", "audited"], registry=self.registry,
        )  # fmt: skip
        self.retention_erased = Counter(
            "xueji_retention_erased_total",
            "Erased after their retention period: children's personal data, record files,"
            " parked message bodies",
            ["what"], registry=self.registry,
        )  # fmt: skip
