"""Do two views or a bagged ensemble give a better out-of-scope signal than our softmax?
A screen on the threshold study's draws, with the sklearn sketch of our pipeline.

Why: at the 1-point in-scope budget our fallback catches about a third of out-of-scope
messages on the study draws (docs/BENCHMARKS.md). Distance-based signals (nearest
neighbour, Mahalanobis) did not beat the calibrated softmax; disagreement is the other
classic out-of-distribution signal. Candidates, each with the same threshold choice (split
folds, 1-point budget) and the prediction of its own argmax:

* current: the sketch's softmax over the whole design (n-grams + vectors);
* bag5: the mean softmax of five SVMs, each fitted on a stratified 80 % of the data;
* views_mean / views_prod: an n-gram-only and a vector-only SVM, each with its own fitted
  temperature, averaged or multiplied (product of experts);
* cur_x_views_mean: current averaged with views_mean;
* cur_min_views: current, its top confidence capped by views_mean's for the same intent.

Adoption rule, fixed before the first run (committed with this script): against current,
on draws 0–3, OOS recall +2 points, in-scope accuracy at the threshold −0.5 at most,
real in-scope loss at most 1.1 points.

    .venv-nlu/bin/python bench/signal_sketch.py --draws 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline_sketch as ps
import threshold_study as ts  # also puts the project on sys.path

from nlu import benchmarks, threshold
from nlu.datasets import Example


def _svm():  # type: ignore[no-untyped-def]
    from sklearn.svm import LinearSVC

    return LinearSVC(C=2.0, random_state=42)


def fit_temperature(x: np.ndarray | sp.csr_matrix, y: np.ndarray, n_labels: int) -> float:
    """As the sketch's (and LinearIntentClassifier's): min log loss on out-of-fold margins."""
    from sklearn.model_selection import StratifiedKFold

    if np.bincount(y).min() < 3:
        return 5.0
    m = np.zeros((x.shape[0], n_labels))
    for tr, te in StratifiedKFold(3, shuffle=True, random_state=42).split(x, y):
        model = _svm().fit(x[tr], y[tr])
        m[np.ix_(te, model.classes_)] = model.decision_function(x[te])
    losses = [-np.log(ps.softmax(m, t)[np.arange(len(y)), y] + 1e-12).mean()
              for t in ps.TEMPERATURES]  # fmt: skip
    return float(ps.TEMPERATURES[int(np.argmin(losses))])


class Views(ps.Sketch):
    """The sketch plus the candidates' extra models."""

    def __init__(self, examples: Sequence[Example], embed: Callable, bags: int = 5) -> None:
        super().__init__(examples, 1.0, embed)
        texts = [e.text for e in examples]
        y = np.array([self.labels.index(e.intent) for e in examples])
        full, sparse_x, dense_x = self._views(texts)
        n = len(self.labels)
        self.sparse_svm, self.sparse_t = _svm().fit(sparse_x, y), fit_temperature(sparse_x, y, n)
        self.dense_svm, self.dense_t = _svm().fit(dense_x, y), fit_temperature(dense_x, y, n)
        rng = np.random.default_rng(42)
        self.bag = []
        for _ in range(bags):
            idx: list[int] = []
            for c in range(n):
                members = np.flatnonzero(y == c)
                k = max(1, round(0.8 * len(members)))
                idx += list(rng.choice(members, k, replace=False))
            picked = np.array(sorted(idx))
            self.bag.append(_svm().fit(full[picked], y[picked]))

    def _views(self, texts: list[str]) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
        counts = sp.hstack([self.words.transform(texts), self.chars.transform(texts)]).tocsr()
        full = self._design(counts, texts)
        weight, self.dense_weight = self.dense_weight, 0.0
        sparse_x = self._design(counts, texts)
        self.dense_weight = weight
        return full, sparse_x, self.embed(texts)

    def signals(self, examples: Sequence[Example]) -> dict[str, np.ndarray]:
        full, sparse_x, dense_x = self._views([e.text for e in examples])
        current = ps.softmax(self.svm.decision_function(full), self.temperature)
        p1 = ps.softmax(self.sparse_svm.decision_function(sparse_x), self.sparse_t)
        p2 = ps.softmax(self.dense_svm.decision_function(dense_x), self.dense_t)
        bag = np.mean([ps.softmax(m.decision_function(full), self.temperature)
                       for m in self.bag], axis=0)  # fmt: skip
        prod = p1 * p2
        views_mean = (p1 + p2) / 2
        rows, top = np.arange(len(current)), current.argmax(axis=1)
        capped = current.copy()
        capped[rows, top] = np.minimum(current[rows, top], views_mean[rows, top])
        return {
            "current": current,
            "bag5": bag,
            "views_mean": views_mean,
            "views_prod": prod / prod.sum(axis=1, keepdims=True),
            "cur_x_views_mean": (current + views_mean) / 2,
            "cur_min_views": capped,
        }


def scored(examples: Sequence[Example], probs: np.ndarray, labels: list[str]) -> list:
    top = [labels[i] for i in probs.argmax(axis=1)]
    return [threshold.Scored(e.intent == ts.OOS, t == e.intent, float(p))
            for e, t, p in zip(examples, top, probs.max(axis=1), strict=True)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--draws", type=int, default=4, help="per source and shape")
    p.add_argument("--start", type=int, default=0, help="index of the first draw")
    p.add_argument("--root", type=Path, default=benchmarks.DEFAULT_ROOT)
    args = p.parse_args(argv)
    embed = ps.token_vectors()
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    started = time.monotonic()
    for draw in ts.draws(args.root, args.draws, args.start):
        folds: dict[str, list] = {}
        for f in threshold.split_folds(draw.train, ts.OOS):
            m = Views(f.train, embed)
            for name, probs in m.signals(f.val).items():
                folds.setdefault(name, []).extend(scored(f.val, probs, m.labels))
        m = Views(draw.train, embed)
        for name, probs in m.signals(draw.evaluation).items():
            on_eval = scored(draw.evaluation, probs, m.labels)
            t = threshold.choose(folds[name], max_in_scope_loss=ts.STUDY_BUDGET).threshold
            ins, oos = threshold.rates(on_eval, t)
            ins_0 = threshold.rates(on_eval, 0.0)[0]
            rows.setdefault(name, []).append((ins_0 - ins, ins, oos or 0.0, ins_0))
            print(f"{draw.source} {draw.shape} #{draw.index} {name}: t={t:.2f} in-scope "
                  f"{ins:.3f} OOS {oos:.3f} loss {ins_0 - ins:.4f}", flush=True)  # fmt: skip
    print(f"{time.monotonic() - started:.0f} s")
    for name, rs in rows.items():
        print(f"{name:18s} {len(rs)} draws: in-scope acc (at the threshold) "
              f"{statistics.fmean(r[1] for r in rs):.3f}, OOS recall "
              f"{statistics.fmean(r[2] for r in rs):.3f}, real in-scope loss "
              f"{100 * statistics.fmean(r[0] for r in rs):.2f} points, accuracy without a "
              f"threshold {statistics.fmean(r[3] for r in rs):.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
