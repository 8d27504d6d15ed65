"""Which in-scope budget meets the issue's bar against stock Rasa? A simulation on the
threshold study's draws, without any test split.

Why: the fallback threshold is chosen on validation folds under an in-scope budget (the
share of in-scope accuracy it may give up there; nlu/threshold.py). The default was 1 point,
read off the issue's "without losing more than 1 point of in-scope accuracy". But the
issue's bar compares us with stock Rasa's default pipeline: beat it on overall accuracy and
on out-of-scope recall, and stay within 1 point of *its* in-scope accuracy. Where our
classifier is far more accurate than stock's in scope (HINT3 powerplay11: 0.644 against
0.508), a 1-point budget relative to our own accuracy leaves that headroom unspent. This
study asks the issue's question on HINT3-shaped tasks cut from CLINC150 and BANKING77
(`threshold_study.draws`: CLINC150 train/val, BANKING77 train; no test split is read):
on each draw, train stock Rasa and our pipeline, choose our threshold on split folds under
each candidate budget, and check the bar on the draw's evaluation set.

Decision rule, fixed before the first run (committed with this script):
* candidates 0.01, 0.02, 0.03, 0.05;
* a draw passes for a budget when, on its evaluation set, ours has higher overall accuracy
  than stock, higher out-of-scope recall, and in-scope accuracy at least stock's − 0.01;
* draws run in index order, all six source × shape cells per index; the rule uses every
  complete index round that finished (at least two rounds, i.e. 12 draws);
* the default budget becomes the candidate that passes the most draws, ties going to the
  smaller budget; it changes from 0.01 only if that candidate passes strictly more draws.
Then HINT3 is run once at the resulting default and reported as it comes out.
(The verdict is nlu.threshold.IN_SCOPE_BUDGET; the figures are in docs/BENCHMARKS.md.)

    .venv-nlu/bin/python bench/budget_study.py --draws 4 --json /tmp/budget.json
    (run it again with the same --json to go on where it stopped)
    .venv-nlu/bin/python bench/budget_study.py --summarize /tmp/budget.json
    # two processes on two cores (each: ... --threads 1 --shard K/2 --json /tmp/bK.json):
    .venv-nlu/bin/python bench/budget_study.py --summarize /tmp/b0.json /tmp/b1.json
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import threshold_study as ts  # also puts the project on sys.path

from nlu import benchmarks, threshold
from nlu.datasets import to_rasa_yaml
from nlu.runtime.evaluate import FALLBACK_INTENT
from nlu.threshold import Scored

BUDGETS = (0.01, 0.02, 0.03, 0.05)


@dataclass(frozen=True)
class Figures:
    accuracy: float  # in-scope examples right and out-of-scope ones caught, over all
    in_scope: float
    oos_recall: float


@dataclass(frozen=True)
class Outcome:
    source: str
    shape: str
    draw: int
    stock: Figures
    ours: dict[str, Figures]  # by budget
    thresholds: dict[str, float]

    def passes(self, budget: str) -> bool:
        o, s = self.ours[budget], self.stock
        return (
            o.accuracy > s.accuracy
            and o.oos_recall > s.oos_recall
            and o.in_scope >= s.in_scope - 0.01 - 1e-12
        )


def figures(scored: Sequence[Scored], t: float) -> Figures:
    ins, oos = threshold.rates(scored, t)
    n_in = sum(not s.oos for s in scored)
    n_oos = len(scored) - n_in
    acc = (ins * n_in + (oos or 0.0) * n_oos) / len(scored)
    return Figures(round(acc, 4), round(ins, 4), round(oos or 0.0, 4))


def stock_scores(config: Path, workdir: Path, draw: ts.Draw) -> list[Scored]:
    """Stock Rasa trained on the draw; its own FallbackClassifier decides (`nlu_fallback`
    counts as catching an out-of-scope example, and as wrong for an in-scope one)."""
    from nlu.runtime.fold_scores import train_and_score

    data = workdir / "stock-train.yml"
    data.write_text(to_rasa_yaml(draw.train), encoding="utf-8")
    preds = train_and_score(config, data, list(draw.evaluation), workdir, "stock")
    out = []
    for e, p in zip(draw.evaluation, preds, strict=True):
        oos = e.intent == ts.OOS
        said = p.intent  # what stock answered, its fallback included
        out.append(Scored(oos, said == e.intent or (oos and said == FALLBACK_INTENT), 1.0))
    return out


def stock_config() -> dict:
    """`rasa init`'s pipeline, NLU only, as nlu.bench_eval.stock_config reads it (that one
    runs gateway-side, outside this runtime)."""
    import rasa

    path = Path(rasa.__file__).parent / "engine/recipes/config_files/default_config.yml"
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg["policies"] = []
    return cfg


def study(draw: ts.Draw, trainer: ts.Trainer, stock: Path, workdir: Path) -> Outcome:
    folds: list[Scored] = []
    for fold in threshold.split_folds(draw.train, ts.OOS):
        folds += trainer.scores(fold.train, fold.val)
    on_eval = trainer.scores(draw.train, draw.evaluation)
    ours, picked = {}, {}
    for b in BUDGETS:
        t = threshold.choose(folds, max_in_scope_loss=b).threshold
        ours[str(b)], picked[str(b)] = figures(on_eval, t), t
    theirs = figures(stock_scores(stock, workdir, draw), 0.0)
    return Outcome(draw.source, draw.shape, draw.index, theirs, ours, picked)


MIN_ROUNDS = 2  # the rule's minimum: 12 draws


def summary(outcomes: Sequence[Outcome]) -> str:
    """Pass counts and means per budget over complete rounds, the rule's verdict once there
    are enough of them, and the draws of unfinished rounds apart (the rule ignores them)."""
    rounds = sorted({o.draw for o in outcomes})
    complete = [r for r in rounds if sum(o.draw == r for o in outcomes) == 2 * len(ts.SHAPES)]
    used = [o for o in outcomes if o.draw in complete]
    rest = [o for o in outcomes if o.draw not in complete]
    lines = [f"{len(used)} draws in {len(complete)} complete rounds"]
    passing = _table(used, lines)
    if len(complete) < MIN_ROUNDS:
        lines.append(f"rule: needs {MIN_ROUNDS} complete rounds, no verdict yet")
    else:
        best = max(passing.values())
        winner = next(b for b in map(str, BUDGETS) if passing[b] == best)
        default = str(ts.STUDY_BUDGET)  # the rule moves from the 1-point default it ran under
        verdict = winner if passing[winner] > passing.get(default, -1) else default
        lines.append(f"rule: the default budget becomes {verdict}")
    if rest:
        lines.append(f"{len(rest)} draws of unfinished rounds (not used by the rule)")
        _table(rest, lines)
    return "\n".join(lines)


def _table(outcomes: Sequence[Outcome], lines: list[str]) -> dict[str, int]:
    """Append the per-budget table of `outcomes` to `lines`; return the pass counts."""
    if not outcomes:
        return {}
    lines += [
        "| budget | draws passing | accuracy ours / stock | in-scope ours / stock "
        "| OOS recall ours / stock |",
        "|---|---:|---|---|---|",
    ]
    mean = statistics.fmean
    s_acc = mean(o.stock.accuracy for o in outcomes)
    s_in = mean(o.stock.in_scope for o in outcomes)
    s_oos = mean(o.stock.oos_recall for o in outcomes)
    passing = {}
    for b in map(str, BUDGETS):
        passing[b] = sum(o.passes(b) for o in outcomes)
        lines.append(
            f"| {b} | {passing[b]}/{len(outcomes)} "
            f"| {mean(o.ours[b].accuracy for o in outcomes):.3f} / {s_acc:.3f} "
            f"| {mean(o.ours[b].in_scope for o in outcomes):.3f} / {s_in:.3f} "
            f"| {mean(o.ours[b].oos_recall for o in outcomes):.3f} / {s_oos:.3f} |"
        )
    return passing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--draws", type=int, default=4, help="index rounds (six draws each)")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--root", type=Path, default=benchmarks.DEFAULT_ROOT)
    p.add_argument("--json", type=Path, help="write every outcome here as it finishes")
    p.add_argument(
        "--summarize",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="only print the tables of earlier --json files (shards merged)",
    )
    p.add_argument(
        "--shard",
        default="0/1",
        metavar="K/N",
        help="run every N-th draw from the K-th, so N processes (each with its "
        "own --json) share a run",
    )
    p.add_argument(
        "--only",
        nargs="+",
        metavar="SOURCE:SHAPE:INDEX",
        help="run just these draws (e.g. banking77:powerplay11:1), so an idle core can "
        "take another shard's last draw; --summarize keeps one outcome per draw",
    )
    p.add_argument("--threads", type=int, default=0,
                   help="TensorFlow threads per process (0: its default; 1 suits two shards "
                   "on two cores)")  # fmt: skip
    args = p.parse_args(argv)
    if args.summarize:
        print(summary(_merged(args.summarize)))
        return 0
    logging.disable(logging.WARNING)
    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    k, n_shards = (int(x) for x in args.shard.split("/"))
    all_draws = sorted(ts.draws(args.root, args.draws, args.start), key=lambda d: d.index)
    all_draws = all_draws[k::n_shards]
    if args.only:
        wanted = {tuple(w.split(":")) for w in args.only}
        all_draws = [d for d in all_draws if (d.source, d.shape, str(d.index)) in wanted]
        if len(all_draws) != len(wanted):
            p.error(f"--only: no such draw among --draws {args.draws} (shard {args.shard}) "
                    f"in {' '.join(sorted(args.only))}")  # fmt: skip
    # A stock model takes minutes per draw, so a run may span sessions: with --json, draws
    # already in the file are kept and skipped (draws are seeded, so they are the same).
    outcomes: list[Outcome] = []
    if args.json and args.json.is_file():
        outcomes = [_outcome(o) for o in json.loads(args.json.read_text())]
        done = {(o.source, o.shape, o.draw) for o in outcomes}
        all_draws = [d for d in all_draws if (d.source, d.shape, d.index) not in done]
        print(f"{len(done)} draws from {args.json}, {len(all_draws)} to go", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="careline-budget-study-") as tmp:
        trainer = ts.Trainer(Path(tmp))
        stock = Path(tmp) / "stock.yml"
        stock.write_text(yaml.safe_dump(stock_config()))
        for n, draw in enumerate(all_draws, 1):
            o = study(draw, trainer, stock, Path(tmp))
            outcomes.append(o)
            print(f"[{time.monotonic() - started:6.0f} s] {n}/{len(all_draws)} {draw.source} "
                  f"{draw.shape} #{draw.index}: stock {o.stock}; ours "
                  + ", ".join(f"{b}: {f} {'PASS' if o.passes(b) else 'fail'}"
                              for b, f in o.ours.items()), flush=True)  # fmt: skip
            if args.json:
                part = args.json.with_name(args.json.name + ".part")
                part.write_text(json.dumps([asdict(x) for x in outcomes], indent=1))
                part.replace(args.json)  # a kill mid-write keeps the last whole file
    print(summary(outcomes))
    return 0


def _merged(files: Sequence[Path]) -> list[Outcome]:
    """Outcomes of several shard files, one per draw."""
    by_draw: dict[tuple[str, str, int], Outcome] = {}
    for f in files:
        for raw in json.loads(f.read_text()):
            o = _outcome(raw)
            by_draw.setdefault((o.source, o.shape, o.draw), o)
    return list(by_draw.values())


def _outcome(raw: dict) -> Outcome:
    return Outcome(raw["source"], raw["shape"], raw["draw"], Figures(**raw["stock"]),
                   {b: Figures(**f) for b, f in raw["ours"].items()},
                   raw["thresholds"])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
