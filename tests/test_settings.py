"""config.yml validation: a bad knob fails at startup with a message naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.core.settings import PROJECT_ROOT, SettingsError, load_settings


def _write(tmp_path: Path, mutate) -> Path:  # type: ignore[no-untyped-def]
    raw = yaml.safe_load((PROJECT_ROOT / "config.yml").read_text(encoding="utf-8"))
    mutate(raw)
    p = tmp_path / "config.yml"
    p.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return p


def test_project_config_is_valid() -> None:
    s = load_settings(PROJECT_ROOT / "config.yml", env={})
    assert s.nlu.port == 5005 and s.nlu.url is None
    assert s.path(s.nlu.data) == PROJECT_ROOT / "data" / "nlu"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["careline"]["nlu"].update(port=70000), "careline.nlu.port"),
        (
            lambda r: r["careline"]["nlu"]["client"].update(timeout_s="soon"),
            "careline.nlu.client.timeout_s",
        ),
        (lambda r: r["careline"]["nlu"].update(prot=5005), "careline.nlu.prot: unknown key"),
        (lambda r: r["careline"]["business"].pop("hotline"), "careline.business.hotline"),
        (lambda r: r.pop("careline"), "missing the top-level 'careline:' section"),
    ],
)  # fmt: skip
def test_bad_config_names_the_key(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SettingsError) as info:
        load_settings(_write(tmp_path, mutate), env={})
    assert message in str(info.value)


def test_broken_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "config.yml"
    bad.write_text("careline: [unclosed")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(bad, env={})
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "nope.yml", env={})


def test_env_overrides_nlu_url() -> None:
    s = load_settings(PROJECT_ROOT / "config.yml", env={"NLU_URL": "http://nlu:5005"})
    assert s.nlu.url == "http://nlu:5005"


def test_cli_reports_config_error_without_traceback(tmp_path: Path) -> None:
    cfg = _write(tmp_path, lambda r: r["careline"]["nlu"].update(port=-1))
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(cfg), "config", "check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert "careline.nlu.port" in out.stderr and "Traceback" not in out.stderr


def test_generic_env_override_is_validated_like_the_file() -> None:
    s = load_settings(
        PROJECT_ROOT / "config.yml",
        env={
            "CARELINE__CONVERSATION__CLAIM_IDLE_S": "2.5",
            "CARELINE__DATABASE__PG_SCHEMA": "tenant_a",
        },
    )
    assert s.conversation.claim_idle_s == 2.5 and s.database.pg_schema == "tenant_a"
    with pytest.raises(SettingsError, match=r"careline\.conversation\.workers"):
        load_settings(PROJECT_ROOT / "config.yml", env={"CARELINE__CONVERSATION__WORKERS": "lots"})
