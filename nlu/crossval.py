"""Cross-validation on the training data (data/nlu): how pipeline changes are chosen.

The held-out split (data/heldout) is for reporting; choosing a pipeline by its held-out score
would quietly turn it into training data. So candidate pipelines are compared here, on
stratified folds of data/nlu only:

    .venv/bin/python -m nlu.crossval --folds 5                 # config.yml's pipeline
    .venv/bin/python -m nlu.crossval --folds 5 --config other.yml

Gateway side (no rasa import): folds are trained with `rasa train nlu` and scored by
nlu.runtime.evaluate, like every other model. Models are cached under models/cv/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bot.core.settings import Settings, load_settings
from nlu.datasets import Example, load_rasa_nlu, stratified_folds, to_rasa_yaml
from nlu.fingerprint import intent_config, rasa_config
from nlu.training import nlu_env, pipeline_fingerprint, train_nlu


def _by_language(examples: list[Example]) -> dict[str, list[Example]]:
    out: dict[str, list[Example]] = {}
    for e in examples:
        out.setdefault(e.language or "xx", []).append(e)
    return out


def run(settings: Settings, config: dict, k: int) -> dict[str, dict]:
    """Per-slice accuracy summed over the `k` folds (each example scored exactly once)."""
    data = load_rasa_nlu(settings.path(settings.nlu.data))
    folds = stratified_folds(data, k)
    cache = settings.path(settings.nlu.models) / "cv"
    cache.mkdir(parents=True, exist_ok=True)
    totals: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="careline-cv-") as tmp:
        for i, test in enumerate(folds):
            train = [e for j, f in enumerate(folds) if j != i for e in f]
            train_dir = cache / f"fold{i}of{k}"
            train_dir.mkdir(exist_ok=True)
            # one file per language keeps the vi/en slices of the scored fold
            for lang, exs in _by_language(train).items():
                (train_dir / f"{lang}.yml").write_text(to_rasa_yaml(exs), encoding="utf-8")
            test_dir = Path(tmp) / f"test{i}"
            test_dir.mkdir()
            for lang, exs in _by_language(test).items():
                (test_dir / f"{lang}.yml").write_text(to_rasa_yaml(exs), encoding="utf-8")
            fp = pipeline_fingerprint(settings, config, [train_dir])
            model = cache / f"cv-{fp}.tar.gz"
            if not model.is_file():
                print(f"fold {i + 1}/{k}: training ...", file=sys.stderr, flush=True)
                train_nlu(settings, config=config, nlu_data=[train_dir], out=model, quiet=True)
            out = Path(tmp) / f"report{i}.json"
            subprocess.run(
                [str(settings.nlu_python), "-m", "nlu.runtime.evaluate", "--model", str(model),
                 "--test", str(test_dir), "--json", str(out)],
                cwd=settings.root, env=nlu_env(settings), check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            report = json.loads(out.read_text())
            for name, r in report.items():
                if name == "model":
                    continue
                n, acc = totals.setdefault(name, [0.0, 0.0]), r["accuracy"] * r["n"]
                n[0] += r["n"]
                n[1] += acc
    return {s: {"n": int(n), "accuracy": round(c / n, 4)} for s, (n, c) in sorted(totals.items())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nlu.crossval", description=__doc__.split("\n")[0])
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--config", type=Path, help="a config.yml to compare (default: the project's)")
    args = p.parse_args(argv)
    settings = load_settings(None)
    config = intent_config(rasa_config(args.config or settings.config_path))
    result = run(settings, config, args.folds)
    print(f"{'slice':<20}{'n':>6}{'accuracy':>10}")
    for name, r in result.items():
        print(f"{name:<20}{r['n']:>6}{r['accuracy']:>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
