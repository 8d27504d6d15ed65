"""Public benchmark loaders and the side-by-side evaluation driver."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.core.settings import Settings
from nlu import benchmarks
from nlu.benchmarks import OOS
from nlu.datasets import Example, to_rasa_yaml
from nlu.fingerprint import rasa_config
from nlu.threshold import IN_SCOPE_BUDGET
from nlu.training import nlu_env


def test_loaders_read_the_published_splits() -> None:
    (b77,) = benchmarks.load("banking77")
    assert (len(b77.train), len(b77.test)) == (10003, 3080)
    assert len({e.intent for e in b77.train}) == 77 and not b77.has_oos
    (clinc,) = benchmarks.load("clinc150")
    assert (len(clinc.train), len(clinc.test)) == (15100, 5500)  # + oos_train / oos_test
    assert sum(e.intent == OOS for e in clinc.test) == 1000 and clinc.has_oos
    hint = benchmarks.load("hint3")
    assert [h.name for h in hint] == ["hint3-sofmattress", "hint3-curekart", "hint3-powerplay11"]
    assert all(any(e.intent == OOS for e in h.test) for h in hint)  # NO_NODES_DETECTED
    assert not any(e.intent == OOS for h in hint for e in h.train)
    train_texts = {e.text for e in b77.train}
    assert not any(e.text in train_texts for e in b77.test[:200])  # splits are the published ones


def test_unknown_benchmark_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown benchmark 'banking78'"):
        benchmarks.load("banking78")


@pytest.mark.nlu
def test_eval_trains_on_train_and_scores_test(tmp_path: Path, nlu_model: Path) -> None:
    report = tmp_path / "bench.json"
    out = subprocess.run(
        [str(Path(sys.executable).parent / "careline"), "nlu", "eval",
         "--benchmark", "hint3-sofmattress", "--pipelines", "ours", "--json", str(report)],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    (row,) = json.loads(report.read_text())
    assert row["benchmark"] == "hint3-sofmattress" and row["pipeline"] == "ours"
    r = row["report"]
    assert r["n"] == 397 and 0.0 < r["accuracy"] <= 1.0
    assert 0.0 <= r["oos_recall"] <= 1.0 and 0.0 < r["in_scope_accuracy"] <= 1.0
    assert row["tuning"]["budget"] == IN_SCOPE_BUDGET and 0.0 <= row["tuning"]["threshold"] < 1.0
    assert "| hint3-sofmattress | ours |" in out.stdout
    again = subprocess.run(
        [str(Path(sys.executable).parent / "careline"), "nlu", "eval",
         "--benchmark", "hint3-sofmattress", "--pipelines", "ours"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    assert again.stdout.strip().endswith("| cached |")  # unchanged data: no retraining
    assert "tuning the threshold:" not in again.stderr  # nor of the fold models


@pytest.mark.nlu
def test_fold_training_that_rasa_skips_fails_saying_why(settings: Settings, tmp_path: Path) -> None:
    """Rasa reports unusable training data by printing and returning: tuning must stop with
    Rasa's words, not score a missing model."""
    empty, val = tmp_path / "train.yml", tmp_path / "val.yml"
    empty.write_text('version: "3.1"\nnlu: []\n', encoding="utf-8")
    val.write_text(to_rasa_yaml([Example("hello", "greet", "en", "test")]), encoding="utf-8")
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(rasa_config(settings.config_path)), encoding="utf-8")
    out = subprocess.run(
        [str(settings.nlu_python), "-m", "nlu.runtime.fold_scores", "--config", str(config),
         "--fold", str(empty), str(val), "--out", str(tmp_path / "scores.json")],
        capture_output=True, text=True, cwd=settings.root, env=nlu_env(settings), timeout=300,
    )  # fmt: skip
    assert out.returncode != 0 and not (tmp_path / "scores.json").exists()
    assert "Rasa produced no model" in out.stderr
    assert "doesn't contain valid NLU data" in out.stderr  # Rasa's own reason, quoted
