"""The surveys and kpi_targets sections of config.yml: defaults, and bad values named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.core.settings import PROJECT_ROOT, SettingsError, load_settings


def _config(tmp_path: Path, surveys: dict[str, Any], targets: dict[str, Any]) -> Path:
    raw = yaml.safe_load((PROJECT_ROOT / "config.yml").read_text(encoding="utf-8"))
    raw["careline"]["surveys"].update(surveys)
    raw["careline"]["kpi_targets"].update(targets)
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_project_defaults() -> None:
    s = load_settings(PROJECT_ROOT / "config.yml", env={})
    assert (s.surveys.expiry_hours, s.surveys.nps_enabled) == (24, False)
    assert (s.kpi_targets.csat_pct, s.kpi_targets.ces_mean, s.kpi_targets.fcr_pct) == (80, 5.5, 70)


@pytest.mark.parametrize(
    ("surveys", "targets", "message"),
    [
        ({"expiry_hour": 2}, {}, "careline.surveys.expiry_hour: unknown key"),
        ({"expiry_hours": 0}, {}, "careline.surveys.expiry_hours"),
        ({"report_timezone": "Mars/Olympus"}, {}, "unknown time zone 'Mars/Olympus'"),
        ({}, {"csat_pct": 120}, "careline.kpi_targets.csat_pct"),
        ({}, {"ces_mean": 9}, "careline.kpi_targets.ces_mean"),
        ({}, {"csat": 80}, "careline.kpi_targets.csat: unknown key"),
    ],
)
def test_bad_values_are_named(
    tmp_path: Path, surveys: dict[str, Any], targets: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_settings(_config(tmp_path, surveys, targets), env={})


def test_environment_turns_nps_on() -> None:
    s = load_settings(PROJECT_ROOT / "config.yml", env={"CARELINE__SURVEYS__NPS_ENABLED": "true"})
    assert s.surveys.nps_enabled is True
