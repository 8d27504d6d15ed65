"""Which way of choosing the fallback threshold keeps its promise? A simulation on
validation data only.

Why: HINT3 ships no out-of-scope training data, so its threshold is chosen on folds of the
train split (nlu/threshold.py), under a budget of at most 1 point of in-scope accuracy lost
to the fallback. Two fold schemes:

* A, `folds(pseudo_oos=True)`: each fold removes a quarter of the intents (they play
  out-of-scope) and 20 % of the rest's examples (in-scope validation), both scored by
  the same fold model. That model knows 3/4 of the intents, so it may be surer of the
  in-scope examples than the full model will be, and the in-scope cost of a threshold
  would then come out too low.
* B, `split_folds`: out-of-scope confidences from the held-out-intent folds, in-scope ones
  from stratified folds that keep every intent.

Which scheme predicts the real in-scope cost is measured here, on HINT3-shaped tasks cut
from CLINC150 and BANKING77 *without touching either test split*: a draw takes N intents
with M training examples each (the shapes of the three HINT3 train splits), chooses a
threshold with A and with B from that training set alone, then trains on the whole draw
and scores an evaluation set the choice never saw: CLINC150's `val` split (the drawn
intents' examples in scope; `oos_val` plus other intents' examples out of scope), or, for
BANKING77, train examples not drawn.

Decision rule, fixed before the first run: the HINT3 tuning switches from A to B if,
pooled over all draws, A's mean in-scope loss on the evaluation sets exceeds the 1-point
budget and B's mean is lower than A's; otherwise A stays.

The same draws also compare pipelines (e.g. with pretrained token vectors): `--config`
trains another config.yml, `--schemes B` skips the old scheme.

Run it with the NLU runtime (it trains in-process, ~14 small models per draw):

    .venv-nlu/bin/python bench/threshold_study.py [--draws 4] [--json out.json]
    .venv-nlu/bin/python bench/threshold_study.py --schemes B --config other.yml
    .venv-nlu/bin/python bench/threshold_study.py --summarize out.json   # tables again
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["RASA_TELEMETRY_ENABLED"] = "false"
os.environ.setdefault("RASA_MAX_CACHE_SIZE", "0")  # as nlu.training.nlu_env, for the same reasons

from nlu import benchmarks, threshold  # noqa: E402
from nlu.datasets import Example, to_rasa_yaml  # noqa: E402
from nlu.fingerprint import intent_config, rasa_config  # noqa: E402
from nlu.threshold import Fold, Scored  # noqa: E402

# The in-scope budget this study (and the sketches built on it) stated its rules at: the
# default when they ran. budget_study.py later moved the default to 0.02; pinning this
# keeps their documented figures reproducible.
STUDY_BUDGET = 0.01

OOS = benchmarks.OOS
# (intents, training examples per intent): the three HINT3 v2 train splits, rounded
# (sofmattress 328 examples / 21 intents, curekart 599 / 28, powerplay11 471 / 57).
SHAPES = {"sofmattress": (21, 16), "curekart": (28, 21), "powerplay11": (57, 8)}
EVAL_PER_INTENT = 20
EVAL_OOS = 300


@dataclass(frozen=True)
class Draw:
    source: str
    shape: str
    index: int
    train: list[Example]
    evaluation: list[Example]  # in scope: drawn intents; out of scope: labelled OOS


@dataclass(frozen=True)
class Outcome:
    """One scheme on one draw: what it chose and what that cost on the evaluation set."""

    source: str
    shape: str
    draw: int
    scheme: str
    threshold: float
    predicted_loss: float  # in-scope accuracy lost to the fallback, on its own folds
    actual_loss: float  # ...and on the evaluation set, by the model trained on the draw
    in_scope_accuracy: float
    oos_recall: float

    @property
    def balanced(self) -> float:
        return (self.in_scope_accuracy + self.oos_recall) / 2


def _by_intent(examples: Sequence[Example]) -> dict[str, list[Example]]:
    out: dict[str, list[Example]] = {}
    for e in examples:
        if e.intent != OOS:
            out.setdefault(e.intent, []).append(e)
    return out


def _as_oos(examples: Sequence[Example]) -> list[Example]:
    return [Example(e.text, OOS, e.language, e.source) for e in examples]


def draws(root: Path, n_draws: int, start: int = 0) -> list[Draw]:
    """HINT3-shaped tasks from CLINC150 (train → task, val → evaluation) and BANKING77
    (train only, split). Test splits are never read."""
    clinc = benchmarks.clinc150(root)
    banking = benchmarks.banking77(root)
    train_pool, val_pool = _by_intent(clinc.train), _by_intent(clinc.val)
    real_oos = [e for e in clinc.val if e.intent == OOS]
    pool = _by_intent(banking.train)
    out = []
    for shape, (n_intents, per_intent) in SHAPES.items():
        for i in range(start, start + n_draws):
            rng = random.Random(f"clinc150:{shape}:{i}")
            chosen = rng.sample(sorted(train_pool), n_intents)
            train = [e for c in chosen for e in rng.sample(train_pool[c], per_intent)]
            others = [e for c in sorted(val_pool) if c not in chosen for e in val_pool[c]]
            evaluation = [e for c in chosen for e in val_pool[c]] + real_oos
            evaluation += _as_oos(rng.sample(others, EVAL_OOS - len(real_oos)))
            out.append(Draw("clinc150", shape, i, train, evaluation))

            rng = random.Random(f"banking77:{shape}:{i}")
            chosen = rng.sample(sorted(pool), n_intents)
            train, evaluation = [], []
            for c in chosen:
                # BANKING77's smallest intents have 35 training examples
                picked = rng.sample(pool[c], min(len(pool[c]), per_intent + EVAL_PER_INTENT))
                train += picked[:per_intent]
                evaluation += picked[per_intent:]
            others = [e for c in sorted(pool) if c not in chosen for e in pool[c]]
            evaluation += _as_oos(rng.sample(others, EVAL_OOS))
            out.append(Draw("banking77", shape, i, train, evaluation))
    return out


class Trainer:
    """Trains our config.yml pipeline in this process and scores examples with it."""

    def __init__(self, workdir: Path, config: Path = ROOT / "config.yml") -> None:
        import yaml

        self.workdir = workdir
        self.config = workdir / "config.yml"
        self.config.write_text(yaml.safe_dump(intent_config(rasa_config(config))))
        self.trained = 0

    def scores(self, train: Sequence[Example], examples: Sequence[Example]) -> list[Scored]:
        from nlu.runtime.fold_scores import train_and_score

        self.trained += 1
        data = self.workdir / "train.yml"
        data.write_text(to_rasa_yaml(train), encoding="utf-8")
        with contextlib.redirect_stderr(io.StringIO()):  # the scoring progress line
            preds = train_and_score(
                self.config, data, list(examples), self.workdir, f"m{self.trained}"
            )
        return [
            Scored(e.intent == OOS, p.top == e.intent, p.confidence)
            for e, p in zip(examples, preds, strict=True)
        ]


def _loss(scored: Sequence[Scored], t: float) -> tuple[float, float, float]:
    """(in-scope accuracy lost at `t`, in-scope accuracy at `t`, OOS recall at `t`)."""
    ins_0, _ = threshold.rates(scored, 0.0)
    ins, oos = threshold.rates(scored, t)
    return ins_0 - ins, ins, oos or 0.0


SCHEMES: dict[str, Callable[[list[Example]], list[Fold]]] = {
    "A": lambda train: threshold.folds(train, OOS, n_folds=threshold.OOS_FOLDS, pseudo_oos=True),
    "B": lambda train: threshold.split_folds(train, OOS),
}


def study(draw: Draw, trainer: Trainer, schemes: str = "AB") -> list[Outcome]:
    on_eval = trainer.scores(draw.train, draw.evaluation)
    out = []
    for scheme in schemes:
        make = SCHEMES[scheme]
        scored: list[Scored] = []
        for fold in make(draw.train):
            scored += trainer.scores(fold.train, fold.val)
        choice = threshold.choose(scored, max_in_scope_loss=STUDY_BUDGET)
        predicted, _, _ = _loss(scored, choice.threshold)
        actual, ins, oos = _loss(on_eval, choice.threshold)
        out.append(Outcome(draw.source, draw.shape, draw.index, scheme, choice.threshold,
                           round(predicted, 4), round(actual, 4), round(ins, 4),
                           round(oos, 4)))  # fmt: skip
    return out


def summary(outcomes: Sequence[Outcome]) -> str:
    lines = [
        "| source | shape | scheme | draws | mean threshold | predicted loss | actual loss "
        "| draws over budget | in-scope acc | OOS recall | balanced |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    groups: dict[tuple[str, str, str], list[Outcome]] = {}
    for o in outcomes:
        for key in ((o.source, o.shape, o.scheme), ("all", "all", o.scheme)):
            groups.setdefault(key, []).append(o)
    order = sorted(groups.items(), key=lambda kv: (kv[0][0] == "all", kv[0]))
    for (source, shape, scheme), os_ in order:

        def mean(f: Callable[[Outcome], float], os_: list[Outcome] = os_) -> float:
            return statistics.fmean(f(o) for o in os_)

        over = sum(o.actual_loss > STUDY_BUDGET + 1e-9 for o in os_)
        lines.append(
            f"| {source} | {shape} | {scheme} | {len(os_)} | {mean(lambda o: o.threshold):.3f} "
            f"| {mean(lambda o: o.predicted_loss):.4f} | {mean(lambda o: o.actual_loss):.4f} "
            f"| {over}/{len(os_)} | {mean(lambda o: o.in_scope_accuracy):.3f} "
            f"| {mean(lambda o: o.oos_recall):.3f} | {mean(lambda o: o.balanced):.3f} |"
        )
    return "\n".join(lines)


def verdict(outcomes: Sequence[Outcome]) -> str:
    """The pre-registered decision rule (module docstring)."""
    if {o.scheme for o in outcomes} != {"A", "B"}:
        return "(one scheme only: no verdict)"
    loss = {s: statistics.fmean(o.actual_loss for o in outcomes if o.scheme == s) for s in "AB"}
    switch = loss["A"] > STUDY_BUDGET and loss["B"] < loss["A"]
    return (
        f"mean actual in-scope loss: A {loss['A']:.4f}, B {loss['B']:.4f} "
        f"(budget {STUDY_BUDGET}) -> {'switch to B' if switch else 'keep A'}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--draws", type=int, default=4, help="per source and shape")
    p.add_argument("--start", type=int, default=0, help="index of the first draw (seeds them)")
    p.add_argument("--root", type=Path, default=benchmarks.DEFAULT_ROOT)
    p.add_argument("--json", type=Path, help="also write every outcome here")
    p.add_argument("--summarize", type=Path, help="only print the tables of an earlier --json")
    p.add_argument(
        "--config",
        type=Path,
        default=ROOT / "config.yml",
        help="the pipeline to train (default: the project's config.yml)",
    )
    p.add_argument(
        "--schemes",
        default="AB",
        choices=["AB", "A", "B"],
        help="fold schemes to run (default: both)",
    )
    args = p.parse_args(argv)
    if args.summarize:
        done = [Outcome(**o) for o in json.loads(args.summarize.read_text())]
        print(summary(done))
        print(verdict(done))
        return 0
    logging.disable(logging.WARNING)
    all_draws = draws(args.root, args.draws, args.start)
    outcomes: list[Outcome] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="careline-threshold-study-") as tmp:
        trainer = Trainer(Path(tmp), args.config.resolve())
        for n, draw in enumerate(all_draws, 1):
            got = study(draw, trainer, args.schemes)
            outcomes += got
            picks = ", ".join(
                f"{o.scheme}: t={o.threshold:.2f} predicted {o.predicted_loss:.3f} "
                f"actual {o.actual_loss:.3f}"
                for o in got
            )
            print(f"[{time.monotonic() - started:6.0f} s] {n}/{len(all_draws)} {draw.source} "
                  f"{draw.shape} #{draw.index}: {picks}", flush=True)  # fmt: skip
            if args.json:
                args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    print(summary(outcomes))
    print(verdict(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
