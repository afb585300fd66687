"""How a command's failure is told (guard.py) and how its tables fit (tables.py)."""

from __future__ import annotations

import io

import pytest
from rich.cells import cell_len
from rich.console import Console

from bridge.entrypoints.guard import CommandFailed, Exit, explain, redacted
from bridge.entrypoints.tables import column_widths, print_table
from bridge.errors import InvalidStudentNumber, RegistryUnauthorized, RegistryUnavailable
from bridge.services.reconciliation import ReconciliationBusy

NUMBER = "G110105201901010012"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://postgres:pw@db:5432/xueji", "postgresql://postgres:***@db:5432/xueji"),
        ("postgresql://u:p@h1:5432,h2:5432/x?password=q", "postgresql://u:***@h1:5432,h2:5432/x?password=***"),
        ("amqp://guest:guest@a/,amqp://guest:guest@b/", "amqp://guest:***@a/,amqp://guest:***@b/"),
        ("http://127.0.0.1:8090/registry", "http://127.0.0.1:8090/registry"),
    ],
)  # fmt: skip
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_an_unexpected_failure_is_named_by_its_type_never_its_message() -> None:
    ending = explain(ValueError(f"bad row for {NUMBER} 王小明"))
    assert ending.code == Exit.FAILED
    assert "ValueError" in ending.sentence and "--debug" in ending.sentence
    assert NUMBER not in ending.sentence and "王小明" not in ending.sentence


def test_a_refused_input_says_its_code_not_the_value_it_quotes() -> None:
    ending = explain(InvalidStudentNumber(f"{NUMBER} fails its check digit"))
    assert ending.code == Exit.FAILED and "invalid_student_number" in ending.sentence
    assert NUMBER not in ending.sentence


def test_each_family_has_its_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_REGISTRY_URL", "http://registry.example:8443/b")
    away = explain(RegistryUnavailable("b8: HTTP 503", url="http://registry.example:8443/b"))
    assert away.code == Exit.UNAVAILABLE
    assert "BRIDGE_REGISTRY_URL" in away.sentence and "registry.example:8443" in away.sentence
    token = explain(RegistryUnauthorized("b1: HTTP 401", url="http://registry.example:8443/b/"))
    assert token.code == Exit.CONFIGURATION and "BRIDGE_REGISTRY_TOKEN" in token.sentence
    assert explain(ReconciliationBusy("a run of 2026 is under way")).code == Exit.UNAVAILABLE
    assert explain(CommandFailed("no such thing")).code == Exit.FAILED
    assert explain(ConnectionRefusedError(111, "refused")).code == Exit.FAILED  # from nowhere known
    grouped = ExceptionGroup("tasks", [ReconciliationBusy("busy"), ValueError(NUMBER)])
    assert explain(grouped).code == Exit.UNAVAILABLE


def test_codes_stay_whole_at_80_columns_or_become_records() -> None:
    codes = ("parked_message", "invalid_student_number", "registered_not_graduated")
    widths = column_widths(("a", "b", "c"), [codes], 80)
    assert widths is not None and widths == [len(c) for c in codes]
    assert column_widths(("a", "b", "c", "d"), [(*codes, "x" * 30)], 80) is None

    buffer = io.StringIO()
    console = Console(file=buffer, width=80)
    print_table(console, "t", ("a", "b", "c", "d"), [(*codes, "x" * 30)])
    text = buffer.getvalue()
    assert all(code in text for code in codes) and "…" not in text
    assert max(cell_len(line) for line in text.splitlines()) <= 80
