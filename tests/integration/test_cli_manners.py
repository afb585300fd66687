"""The installed ``xueji`` as an operator's shell runs it: a failure is one sentence naming
the setting and URL, with a documented exit code and no traceback (unless ``--debug``);
tables fit 80 columns without cutting a code; ``--json`` parses."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.cells import cell_len

from bridge.adapters.postgres.parked_messages import ParkedMessages
from bridge.bootstrap import open_pool
from bridge.settings import Settings
from tests.support.bridge_process import settings_env

pytestmark = pytest.mark.live

XUEJI = str(Path(sys.executable).parent / "xueji")
NUMBER = "G110105201901010012"  # shaped like a student number: never printed whole


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: every connection to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


async def xueji(
    settings: Settings, *argv: str, columns: int = 80, **env: str
) -> tuple[int, str, str]:
    """Run the console script as a child process: (exit code, stdout, stderr)."""
    environment = settings_env(settings) | {"COLUMNS": str(columns)}
    environment.pop("XUEJI_DEBUG", None)  # only where a test sets it
    environment |= env
    done = await asyncio.to_thread(
        subprocess.run, [XUEJI, *argv], env=environment, capture_output=True, timeout=120,
    )  # fmt: skip
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def one_sentence(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


async def test_an_unreachable_registry_is_one_sentence_naming_its_url_and_setting(
    bridge_settings: Settings, closed_port: int
) -> None:
    away = f"http://127.0.0.1:{closed_port}"
    settings = bridge_settings.model_copy(
        update={"preschool_url": f"{away}/preschool", "registry_url": f"{away}/registry"}
    )
    code, out, err = await xueji(settings, "reconcile", "--entry-year", "2026")
    assert code == 3 and out == ""
    sentence = one_sentence(err)
    assert sentence.startswith("xueji reconcile: ")
    assert f"{away}/preschool" in sentence and "BRIDGE_PRESCHOOL_URL" in sentence
    assert "run the command again" in sentence

    # --debug (or XUEJI_DEBUG=1) adds the traceback; the sentence and the code stay.
    for how in (("--debug",), ()):
        extra = {} if how else {"XUEJI_DEBUG": "1"}
        code, _, err = await xueji(settings, *how, "reconcile", "--entry-year", "2026", **extra)
        assert code == 3 and "Traceback" in err and "RegistryUnavailable" in err
        assert err.rstrip().splitlines()[-1] == sentence


async def test_an_unreachable_database_names_the_setting_with_the_password_masked(
    bridge_settings: Settings, closed_port: int
) -> None:
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:{closed_port}/xueji"
    settings = bridge_settings.model_copy(update={"database_url": url})
    for argv in (("parked", "groups"), ("report", "runs", "--json"), ("migrate",)):
        code, out, err = await xueji(settings, *argv)
        sentence = one_sentence(err)
        assert code == 3 and out == ""
        assert "BRIDGE_DATABASE_URL" in sentence and "ConnectionRefusedError" in sentence
        assert f"postgresql://postgres:***@127.0.0.1:{closed_port}/xueji" in sentence
        assert "s3cret-pw" not in err


async def test_a_wrong_setting_or_argument_has_its_own_exit_code(
    bridge_settings: Settings,
) -> None:
    code, _, err = await xueji(bridge_settings, "parked", "groups", BRIDGE_HTTP_PORT="eighty")
    assert code == 4
    assert "BRIDGE_HTTP_PORT" in one_sentence(err) and "eighty" not in err

    without_key = bridge_settings.model_copy(update={"file_keys": None})
    code, _, err = await xueji(without_key, "files", "keys")
    assert code == 4 and "BRIDGE_FILE_KEYS" in one_sentence(err)

    code, _, err = await xueji(bridge_settings, "parked", "show", "seventeen")
    assert code == 2 and "invalid int value" in err and "Traceback" not in err

    code, _, err = await xueji(bridge_settings, "parked", "show", "424242")
    assert code == 1 and "no parked message #424242" in one_sentence(err)

    code, out, _ = await xueji(bridge_settings, "--help")
    assert code == 0 and "exit codes:" in out and "4  a setting is missing" in out


async def test_tables_fit_80_columns_and_json_parses(
    bridge_settings: Settings, closed_port: int
) -> None:
    pool = await open_pool(bridge_settings)
    try:
        parked = ParkedMessages(pool)
        body = json.dumps({"data": {"student_number": NUMBER, "name": "王小明"}}).encode()
        for code in ("invalid_student_number", "invalid_envelope", "delivery_limit"):
            await parked.add(
                message_id=f"m-{code}", routing_key="preschool.child.graduated", code=code,
                reason=f"refused: {code}", headers="{}", body=body,
            )  # fmt: skip
    finally:
        await pool.close()

    code, out, err = await xueji(bridge_settings, "parked", "groups", columns=80)
    assert code == 0, err
    assert "…" not in out
    for whole in ("parked_message", "invalid_student_number", "invalid_envelope",
                  "delivery_limit"):  # fmt: skip
        assert whole in out  # never parked_mes… nor invalid_st…
    assert max(cell_len(line) for line in out.splitlines()) <= 80

    code, out, _ = await xueji(bridge_settings, "parked", "groups", "--json")
    groups = json.loads(out)
    assert code == 0 and sorted(g["reason"] for g in groups) == [
        "delivery_limit", "invalid_envelope", "invalid_student_number"
    ]  # fmt: skip
    code, out, _ = await xueji(bridge_settings, "parked", "list", "--json")
    [first, *_] = json.loads(out)
    code, out, _ = await xueji(bridge_settings, "parked", "show", str(first["id"]), "--json")
    shown = json.loads(out)
    assert code == 0 and shown["id"] == first["id"]
    assert NUMBER not in out and "王小明" not in out  # masked as on screen

    code, out, _ = await xueji(bridge_settings, "report", "runs", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = await xueji(bridge_settings, "calendar", "show", "2031", "--json")
    assert code == 0 and json.loads(out) == {"year": 2031, "official": False}
    code, out, _ = await xueji(bridge_settings, "migrate", "--json")
    assert code == 0 and json.loads(out)["schema"] == "up to date"
    # A retry with the broker away: one sentence, and the message stays parked.
    broker = f"amqp://guest:guest-pw@127.0.0.1:{closed_port}/"
    away = bridge_settings.model_copy(update={"amqp_url": broker})
    code, out, err = await xueji(away, "parked", "retry", "--id", str(first["id"]))
    sentence = one_sentence(err)
    assert code == 3 and out == "" and "BRIDGE_AMQP_URL" in sentence
    assert f"amqp://guest:***@127.0.0.1:{closed_port}/" in sentence and "guest-pw" not in err
    code, out, _ = await xueji(bridge_settings, "parked", "list", "--json")
    assert first["id"] in [m["id"] for m in json.loads(out)]

    code, out, _ = await xueji(bridge_settings, "parked", "resolve", str(first["id"]),
                               "--note", "a test message", "--json")  # fmt: skip
    assert code == 0 and json.loads(out) == {"id": first["id"], "resolved": True}


async def test_progress_goes_to_stderr_when_asked_and_the_report_fits_80_columns(
    bridge_settings: Settings,
) -> None:
    code, out, err = await xueji(bridge_settings, "reconcile", "--entry-year", "2026", "--json")
    assert code == 0 and json.loads(out)["categories"] and err == ""  # no terminal: quiet
    code, out, err = await xueji(
        bridge_settings, "reconcile", "--entry-year", "2026", "--json", "--progress"
    )
    assert code == 0 and json.loads(out)["categories"]  # stdout stays one JSON document
    last = err.splitlines()[-1]
    assert last.startswith("read ") and "roster 0" in last and "registry 0" in last

    code, out, err = await xueji(bridge_settings, "report", "show", "--entry-year", "2026")
    assert code == 0, err
    assert "…" not in out and max(cell_len(line) for line in out.splitlines()) <= 80
    for category in ("registered_not_graduated", "cancelled_but_registered", "not_in_roster"):
        assert category in out


async def test_school_names_load_from_a_csv_and_a_bad_file_is_one_sentence(
    bridge_settings: Settings, tmp_path: Path
) -> None:
    good = tmp_path / "names.csv"
    good.write_text("\ufeffcode,name\n2111010501,北京市东城区第一小学\n", encoding="utf-8")
    code, out, err = await xueji(bridge_settings, "schools", "load", str(good))
    assert code == 0, err
    assert "loaded 1" in out

    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe not utf-8 \x80")
    code, out, err = await xueji(bridge_settings, "schools", "load", str(bad))
    assert code == 1 and out == ""
    sentence = one_sentence(err)
    assert sentence.startswith("xueji schools load: ") and "bad.csv" in sentence
