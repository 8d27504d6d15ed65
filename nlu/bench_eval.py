"""`careline nlu eval --benchmark NAME`: our pipeline and stock Rasa's default pipeline,
trained on the same train split and scored on the same test split, side by side.

Gateway side (no rasa import): training and scoring run in the NLU runtime as child
processes, exactly like the project's own model. Models are cached under models/bench/ by a
fingerprint of config + training data, so a rerun only scores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.settings import Settings
from nlu import benchmarks
from nlu.datasets import to_rasa_yaml
from nlu.fingerprint import model_fingerprint, rasa_config
from nlu.training import COMPONENT_CODE, nlu_env, train_nlu

PIPELINES = ("ours", "stock")


@dataclass
class Row:
    benchmark: str
    pipeline: str
    train_s: float | None  # None when the model came from the cache
    report: dict[str, Any]


def stock_config(settings: Settings) -> dict[str, Any]:
    """The pipeline `rasa init` trains with (Rasa's default recipe config), NLU only."""
    found = sorted(
        settings.path(settings.nlu.venv).glob(
            "lib/python3*/site-packages/rasa/engine/recipes/config_files/default_config.yml"
        )
    )
    if not found:
        raise FileNotFoundError("Rasa's default_config.yml not found in the NLU runtime")
    cfg = yaml.safe_load(found[0].read_text(encoding="utf-8"))
    cfg["policies"] = []
    return cfg


def _config(settings: Settings, pipeline: str) -> dict[str, Any]:
    return rasa_config(settings.config_path) if pipeline == "ours" else stock_config(settings)


def run(
    settings: Settings, name: str, pipelines: tuple[str, ...] = PIPELINES, root: Path | None = None
) -> list[Row]:
    rows: list[Row] = []
    for bench in benchmarks.load(name, root):
        with tempfile.TemporaryDirectory(prefix="careline-bench-") as tmp:
            # A stable path: the model fingerprint covers the file's path and content, so
            # an unchanged benchmark reuses its trained model.
            train_file = settings.path(settings.nlu.models) / "bench" / f"{bench.name}-train.yml"
            train_file.parent.mkdir(parents=True, exist_ok=True)
            test_file = Path(tmp) / "test.yml"
            train_file.write_text(to_rasa_yaml(bench.train), encoding="utf-8")
            test_file.write_text(to_rasa_yaml(bench.test), encoding="utf-8")
            for pipeline in pipelines:
                rows.append(_one(settings, bench, pipeline, train_file, test_file, Path(tmp)))
    return rows


def _one(settings: Settings, bench: benchmarks.Benchmark, pipeline: str, train_file: Path,
         test_file: Path, tmp: Path) -> Row:  # fmt: skip
    config = _config(settings, pipeline)
    code = [settings.root / p for p in COMPONENT_CODE] if pipeline == "ours" else []
    fp = model_fingerprint(config, [train_file], code, root=settings.root)
    model = settings.path(settings.nlu.models) / "bench" / f"{bench.name}-{pipeline}-{fp}.tar.gz"
    train_s = None
    if not model.is_file():
        print(f"[{bench.name}/{pipeline}] training on {len(bench.train)} examples ...",
              file=sys.stderr, flush=True)  # fmt: skip
        started = time.monotonic()
        train_nlu(settings, config=config, nlu_data=[train_file], out=model, quiet=True)
        train_s = round(time.monotonic() - started, 1)
    print(f"[{bench.name}/{pipeline}] scoring {len(bench.test)} test examples ...",
          file=sys.stderr, flush=True)  # fmt: skip
    report_file = tmp / f"{pipeline}.json"
    cmd = [str(settings.nlu_python), "-m", "nlu.runtime.evaluate", "--model", str(model),
           "--test", str(test_file), "--json", str(report_file)]  # fmt: skip
    if bench.has_oos:
        cmd += ["--oos-label", benchmarks.OOS]
    subprocess.run(cmd, cwd=settings.root, env=nlu_env(settings), check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return Row(bench.name, pipeline, train_s, json.loads(report_file.read_text())["all"])


def render(rows: list[Row]) -> str:
    head = (
        "| benchmark | pipeline | n | accuracy | macro-F1 | in-scope acc | OOS recall | train s |"
    )
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        a = r.report
        ins = f"{a['in_scope_accuracy']:.3f}" if "in_scope_accuracy" in a else "–"
        oos = f"{a['oos_recall']:.3f}" if "oos_recall" in a else "–"
        t = f"{r.train_s:.0f}" if r.train_s is not None else "cached"
        lines.append(f"| {r.benchmark} | {r.pipeline} | {a['n']} | {a['accuracy']:.3f} | "
                     f"{a['macro_f1']:.3f} | {ins} | {oos} | {t} |")  # fmt: skip
    return "\n".join(lines)
