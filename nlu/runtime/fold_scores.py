"""Threshold tuning's fold models: train each fold and score its held-out examples, all in
one process.

Why one process: tuning trains up to nine fold models (nlu/threshold.py). As separate
`rasa train nlu` and scoring runs, each fold paid for importing Rasa and TensorFlow twice,
about as long as training a small fold takes. NLU runtime only; the gateway-side driver
(nlu/bench_eval.py) writes the folds and reads the scores.

    python -m nlu.runtime.fold_scores --config C.yml --fold TRAIN.yml VAL.yml ... --out S.json

writes, per fold, [gold intent, top intent, confidence] for each held-out example.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from nlu.datasets import Example, load_rasa_nlu
from nlu.runtime.evaluate import Prediction, predict


def train_and_score(
    config: Path, train_file: Path, examples: list[Example], workdir: Path, name: str
) -> list[Prediction]:
    """Train `config` on `train_file` in this process, score `examples`, drop the model.

    Rasa's printed output (not TensorFlow's native logging) goes to a log that is dropped on
    success and quoted in the error otherwise: Rasa reports bad data by printing and
    returning, not by raising."""
    from rasa.model_training import train_nlu

    log = workdir / f"{name}.log"
    model = workdir / f"{name}.tar.gz"
    try:
        with (
            open(log, "w", encoding="utf-8") as fh,
            contextlib.redirect_stdout(fh),
            contextlib.redirect_stderr(fh),
        ):
            train_nlu(str(config), str(train_file), str(workdir), fixed_model_name=name)
        if not model.is_file():
            raise RuntimeError("Rasa produced no model")
    except Exception as e:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"training on {train_file} failed: {e}\n{tail}") from e
    log.unlink()
    try:
        return predict(model, examples)
    finally:
        model.unlink()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nlu.runtime.fold_scores")
    p.add_argument("--config", type=Path, required=True, help="the Rasa config to train")
    p.add_argument("--fold", nargs=2, type=Path, action="append", required=True,
                   metavar=("TRAIN", "VAL"), help="training, held-out data")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="JSON scores, one list per fold")
    p.add_argument("--workdir", type=Path, help="where fold models are trained (default: OUT's)")
    args = p.parse_args(argv)
    workdir = args.workdir or args.out.parent
    workdir.mkdir(parents=True, exist_ok=True)
    scores = []
    for k, (train_file, val_file) in enumerate(args.fold, start=1):
        examples = load_rasa_nlu(val_file)
        if not examples:
            print(f"error: no labelled examples in {val_file}", file=sys.stderr)
            return 2
        started = time.monotonic()
        print(f"tuning fold {k}/{len(args.fold)}: training on {train_file.name} ...",
              file=sys.stderr, flush=True)  # fmt: skip
        preds = train_and_score(args.config, train_file, examples, workdir, f"fold{k}")
        pairs = zip(examples, preds, strict=True)
        scores.append([[e.intent, p.top, p.confidence] for e, p in pairs])
        print(f"tuning fold {k}/{len(args.fold)}: {len(examples)} held-out examples scored "
              f"({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    args.out.write_text(json.dumps(scores, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
