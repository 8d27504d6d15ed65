"""Model fingerprints: retrain exactly when what Rasa trains on changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from bot.core.settings import PROJECT_ROOT, load_settings
from nlu.fingerprint import rasa_config
from nlu.training import pipeline_fingerprint, project_model


def _copy_project(tmp_path: Path) -> Path:
    shutil.copy(PROJECT_ROOT / "config.yml", tmp_path / "config.yml")
    shutil.copytree(PROJECT_ROOT / "data", tmp_path / "data")
    return tmp_path / "config.yml"


def test_fingerprint_follows_data_and_rasa_config_not_our_section(tmp_path: Path) -> None:
    cfg = _copy_project(tmp_path)
    base = project_model(load_settings(cfg, env={})).fingerprint

    raw = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    raw["careline"]["business"]["hotline"] = "1900 0000"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True))
    assert project_model(load_settings(cfg, env={})).fingerprint == base

    raw["pipeline"][-1]["threshold"] = 0.55
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True))
    changed_cfg = project_model(load_settings(cfg, env={})).fingerprint
    assert changed_cfg != base

    vi = tmp_path / "data" / "nlu" / "vi.yml"
    vi.write_text(vi.read_text(encoding="utf-8") + "    - một ví dụ mới\n", encoding="utf-8")
    assert project_model(load_settings(cfg, env={})).fingerprint not in (base, changed_cfg)


def test_model_path_is_named_by_fingerprint(settings) -> None:  # type: ignore[no-untyped-def]
    m = project_model(settings)
    assert m.path.name == f"nlu-{m.fingerprint}.tar.gz"
    assert m.path.parent == settings.path(settings.nlu.models)


def test_every_cached_model_follows_the_abbreviation_lexicon(tmp_path: Path) -> None:
    """Benchmark, tuning and cross-validation models are cached by `pipeline_fingerprint`:
    the lexicon is data the model bakes in, so editing it must retrain them all."""
    cfg = _copy_project(tmp_path)
    settings = load_settings(cfg, env={})
    train = tmp_path / "data" / "nlu"
    config = rasa_config(cfg)
    before = (pipeline_fingerprint(settings, config, [train]), project_model(settings).fingerprint)
    lexicon = tmp_path / "data" / "lexicon" / "abbreviations.yml"
    lexicon.write_text(lexicon.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    after = (pipeline_fingerprint(settings, config, [train]), project_model(settings).fingerprint)
    assert after[0] != before[0] and after[1] != before[1]
