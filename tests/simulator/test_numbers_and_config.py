"""The MOD 11-2 check character, the number forms, and settings from the environment."""

from __future__ import annotations

import pytest

from simulator.app import main
from simulator.config import DEFAULT_DATABASE_URL, SimConfig
from simulator.numbers import check_char, resident_id_problem, student_number_problem


@pytest.mark.parametrize(
    ("body17", "expected"),
    # The two examples printed in GB 11643-1999, and the contract's own example.
    [("11010519491231002", "X"), ("44052418800101001", "4"), ("11010520190307001", "2")],
)
def test_check_character_follows_iso_7064_mod_11_2(body17: str, expected: str) -> None:
    assert check_char(body17) == expected


def test_student_number_forms() -> None:
    assert student_number_problem("G110105201903070012") is None
    assert student_number_problem("G11010519491231002X") is None
    assert "check character" in (student_number_problem("G110105201903070013") or "")
    assert student_number_problem("J110105201903070012") is None
    assert student_number_problem("L110105201903071234") is None
    assert student_number_problem("L110105201902301234") is not None  # 30 February
    assert student_number_problem("X110105201903070012") is not None
    assert student_number_problem("G11010520190307001") is not None
    assert resident_id_problem("110105201913070012") is not None  # month 13


def test_settings_come_from_the_environment_with_local_defaults() -> None:
    assert SimConfig.from_env({}) == SimConfig()
    assert SimConfig().database_url == DEFAULT_DATABASE_URL
    config = SimConfig.from_env(
        {
            "SIM_HOST": "0.0.0.0",
            "SIM_PORT": "9000",
            "SIM_PUBLIC_URL": "http://sim.example/",
            "SIM_REGISTRY_TOKEN": "r",
            "SIM_PRESCHOOL_TOKEN": "p",
        }
    )
    assert (config.host, config.port, config.public_url) == ("0.0.0.0", 9000, "http://sim.example")
    assert (config.registry_token, config.preschool_token) == ("r", "p")


def test_the_command_line_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--port" in capsys.readouterr().out
