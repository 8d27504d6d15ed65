"""`careline nlu eval --benchmark NAME`: our pipeline and stock Rasa's default pipeline,
trained on the same train split and scored on the same test split, side by side.

Gateway side (no rasa import): training and scoring run in the NLU runtime as child
processes, exactly like the project's own model. Models are cached under models/bench/ by a
fingerprint of config + training data, so a rerun only scores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.core.settings import Settings
from nlu import benchmarks, threshold
from nlu.datasets import Example, to_rasa_yaml
from nlu.files import parse_yaml
from nlu.fingerprint import intent_config, model_fingerprint, rasa_config
from nlu.threshold import IN_SCOPE_BUDGET, Choice, Scored
from nlu.training import TrainingError, nlu_env, pipeline_fingerprint, train_nlu

PIPELINES = ("ours", "stock")
# Code that turns a fold model into the cached fold scores: part of their fingerprint.
SCORING_CODE = ("nlu/runtime/fold_scores.py", "nlu/runtime/evaluate.py", "nlu/runtime/model.py",
                "nlu/datasets.py")  # fmt: skip


@dataclass
class Row:
    benchmark: str
    pipeline: str
    train_s: float | None  # None when the model came from the cache
    report: dict[str, Any]
    # ours: the fallback threshold chosen on validation data and how it scored there
    tuning: dict[str, Any] | None = None


def stock_config(settings: Settings) -> dict[str, Any]:
    """The pipeline `rasa init` trains with (Rasa's default recipe config), NLU only."""
    found = sorted(
        settings.path(settings.nlu.venv).glob(
            "lib/python3*/site-packages/rasa/engine/recipes/config_files/default_config.yml"
        )
    )
    if not found:
        raise FileNotFoundError("Rasa's default_config.yml not found in the NLU runtime")
    cfg = parse_yaml(found[0].read_text(encoding="utf-8"))
    cfg["policies"] = []
    return cfg


def _config(settings: Settings, pipeline: str) -> dict[str, Any]:
    if pipeline == "ours":
        return intent_config(rasa_config(settings.config_path))
    return stock_config(settings)


def _bench_dir(settings: Settings) -> Path:
    d = settings.path(settings.nlu.models) / "bench"
    d.mkdir(parents=True, exist_ok=True)
    return d


def run(
    settings: Settings,
    name: str,
    pipelines: tuple[str, ...] = PIPELINES,
    root: Path | None = None,
    threshold: float | None = None,
    budget: float = IN_SCOPE_BUDGET,
) -> list[Row]:
    """Train (or reuse) and score each pipeline. For ours the fallback threshold is tuned
    on validation data, giving up at most `budget` of in-scope accuracy there, unless
    `threshold` fixes it; stock Rasa keeps its own default."""
    rows: list[Row] = []
    for bench in benchmarks.load(name, root):
        with tempfile.TemporaryDirectory(prefix="careline-bench-") as tmp:
            # A stable path: the model fingerprint covers the file's path and content, so
            # an unchanged benchmark reuses its trained model.
            train_file = _bench_dir(settings) / f"{bench.name}-train.yml"
            test_file = Path(tmp) / "test.yml"
            train_file.write_text(to_rasa_yaml(bench.train), encoding="utf-8")
            test_file.write_text(to_rasa_yaml(bench.test), encoding="utf-8")
            for pipeline in pipelines:
                started = time.monotonic()
                model, trained = _model(settings, bench.name, pipeline, train_file)
                train_s = round(time.monotonic() - started, 1) if trained else None
                tuning = None
                t = None
                if pipeline == "ours":
                    if threshold is None:
                        choice = tune(settings, bench, model, Path(tmp), budget)
                        t, tuning = choice.threshold, {**asdict(choice), "budget": budget}
                    else:
                        t, tuning = threshold, {"threshold": threshold, "fixed": True}
                report = _score(settings, bench, pipeline, model, test_file, Path(tmp), t)
                rows.append(Row(bench.name, pipeline, train_s, report, tuning))
    return rows


def _model(settings: Settings, label: str, pipeline: str, train_file: Path) -> tuple[Path, bool]:
    """The model of `pipeline` trained on `train_file`, from the cache when unchanged."""
    config = _config(settings, pipeline)
    if pipeline == "ours":
        fp = pipeline_fingerprint(settings, config, [train_file])
    else:
        fp = model_fingerprint(config, [train_file], root=settings.root)
    model = _bench_dir(settings) / f"{label}-{pipeline}-{fp}.tar.gz"
    if model.is_file():
        return model, False
    print(f"[{label}/{pipeline}] training on {train_file.name} ...", file=sys.stderr, flush=True)
    train_nlu(settings, config=config, nlu_data=[train_file], out=model, quiet=True)
    return model, True


def _evaluate(settings: Settings, model: Path, examples_file: Path, out: Path,
              extra: list[str]) -> dict[str, Any]:  # fmt: skip
    cmd = [str(settings.nlu_python), "-m", "nlu.runtime.evaluate", "--model", str(model),
           "--test", str(examples_file), "--json", str(out), *extra]  # fmt: skip
    subprocess.run(cmd, cwd=settings.root, env=nlu_env(settings), check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return json.loads(out.read_text())


def _score(settings: Settings, bench: benchmarks.Benchmark, pipeline: str, model: Path,
           test_file: Path, tmp: Path, t: float | None) -> dict[str, Any]:  # fmt: skip
    print(f"[{bench.name}/{pipeline}] scoring {len(bench.test)} test examples ...",
          file=sys.stderr, flush=True)  # fmt: skip
    extra = ["--oos-label", benchmarks.OOS] if bench.has_oos else []
    if t is not None:
        extra += ["--threshold", str(t)]
    return _evaluate(settings, model, test_file, tmp / f"{pipeline}.json", extra)["all"]


def _scored(settings: Settings, model: Path, examples: list[Example], tmp: Path) -> list[Scored]:
    """Confidences of `model` on validation examples, for the threshold choice."""
    val_file, scores = tmp / "val.yml", tmp / "val-scores.json"
    val_file.write_text(to_rasa_yaml(examples), encoding="utf-8")
    _evaluate(settings, model, val_file, tmp / "val.json", ["--scores", str(scores)])
    return _as_scored(json.loads(scores.read_text()))


def _as_scored(rows: list[list[Any]]) -> list[Scored]:
    """[gold, top intent, confidence] rows, as the threshold choice reads them."""
    return [Scored(gold == benchmarks.OOS, top == gold, float(conf)) for gold, top, conf in rows]


def tune(
    settings: Settings,
    bench: benchmarks.Benchmark,
    model: Path,
    tmp: Path,
    budget: float = IN_SCOPE_BUDGET,
) -> Choice:
    """Our fallback threshold for `bench`, chosen on validation data only (never test).

    With a validation split (CLINC150) the full-train `model` scores it; otherwise models
    trained on folds of the train split score their held-out part (see nlu/threshold.py).
    """
    if bench.val:
        print(f"[{bench.name}/ours] tuning the threshold on {len(bench.val)} validation "
              "examples ...", file=sys.stderr, flush=True)  # fmt: skip
        return threshold.choose(_scored(settings, model, bench.val, tmp), max_in_scope_loss=budget)
    # With out-of-scope messages to catch: split folds (bench/threshold_study.py chose them
    # over taking both sides from held-out-intent folds); without, one 80/20 split.
    made = (
        threshold.split_folds(bench.train, benchmarks.OOS)
        if bench.has_oos
        else threshold.folds(bench.train, benchmarks.OOS, n_folds=1, pseudo_oos=False)
    )
    return threshold.choose(_fold_scores(settings, bench.name, made, tmp), max_in_scope_loss=budget)


def _fold_scores(
    settings: Settings, name: str, made: list[threshold.Fold], tmp: Path
) -> list[Scored]:
    """Every fold's held-out confidences, from one NLU-runtime process that trains the fold
    models in turn (nlu/runtime/fold_scores.py), or from the cache when nothing changed."""
    files: list[Path] = []
    for k, fold in enumerate(made):
        for part, examples in (("train", fold.train), ("val", fold.val)):
            path = _bench_dir(settings) / f"{name}-tune{k}-{part}.yml"
            path.write_text(to_rasa_yaml(examples), encoding="utf-8")
            files.append(path)
    config = _config(settings, "ours")
    fp = pipeline_fingerprint(settings, config, files, SCORING_CODE)
    cached = _bench_dir(settings) / f"{name}-tune-{fp}.json"
    if not cached.is_file():
        print(f"[{name}/ours] tuning the threshold: {len(made)} fold models ...",
              file=sys.stderr, flush=True)  # fmt: skip
        cfg = tmp / "tune-config.yml"
        cfg.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
        # Written beside the cache, then renamed: same file system, never half a file.
        out = cached.with_name(f".{cached.name}.{os.getpid()}.part")
        folds = [arg for i in range(0, len(files), 2)  # (train, val) per fold
                 for arg in ("--fold", str(files[i]), str(files[i + 1]))]  # fmt: skip
        cmd = [str(settings.nlu_python), "-m", "nlu.runtime.fold_scores", "--config", str(cfg),
               "--out", str(out), "--workdir", str(tmp / "folds"), *folds]  # fmt: skip
        # stdout carries the results table: the child's progress goes to stderr.
        proc = subprocess.run(cmd, cwd=settings.root, env=nlu_env(settings),
                              stdout=sys.stderr, check=False)  # fmt: skip
        if proc.returncode != 0:
            out.unlink(missing_ok=True)
            raise TrainingError(f"threshold tuning failed (exit {proc.returncode}); its "
                                "output is above")  # fmt: skip
        os.replace(out, cached)
    return [s for fold in json.loads(cached.read_text(encoding="utf-8")) for s in _as_scored(fold)]


def render(rows: list[Row]) -> str:
    head = (
        "| benchmark | pipeline | n | accuracy | macro-F1 | in-scope acc | OOS recall "
        "| threshold | train s |"
    )
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        a = r.report
        ins = f"{a['in_scope_accuracy']:.3f}" if "in_scope_accuracy" in a else "–"
        oos = f"{a['oos_recall']:.3f}" if "oos_recall" in a else "–"
        t = f"{r.train_s:.0f}" if r.train_s is not None else "cached"
        th = f"{r.tuning['threshold']:.2f}" if r.tuning else "Rasa default"
        lines.append(f"| {r.benchmark} | {r.pipeline} | {a['n']} | {a['accuracy']:.3f} | "
                     f"{a['macro_f1']:.3f} | {ins} | {oos} | {th} | {t} |")  # fmt: skip
    return "\n".join(lines)
