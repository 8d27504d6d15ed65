"""A fast sklearn sketch of our NLU pipeline on the threshold study's draws, for screening
ideas before the real study.

Why: `threshold_study.py` trains the real Rasa pipeline, ~10 models per draw; screening a
feature or a confidence signal that way takes hours. This sketch rebuilds the pipeline's
core in plain sklearn: folded word 1–2-gram and char_wb 1–5-gram counts, sublinear tf-idf
with one unit-length row, LinearSVC (C 2), a softmax temperature fitted on out-of-fold
margins, optionally the token vectors appended with weight `--dense-weight`. It chooses
each draw's threshold on split folds under the 1-point budget, like HINT3's tuning, and
scores the draw's evaluation set. No abbreviation expansion and no Vietnamese skip: the
draws are English. On draws 0–3 it lands close to the real pipeline (docs/BENCHMARKS.md,
"Pretrained token vectors"); a decision still needs the real study.

    .venv-nlu/bin/python bench/pipeline_sketch.py --draws 4                    # n-grams only
    .venv-nlu/bin/python bench/pipeline_sketch.py --draws 4 --dense-weight 1   # + vectors
    .venv-nlu/bin/python bench/pipeline_sketch.py --dense-weight 1 --budgets 0.01,0.03,1
                                            # what other in-scope budgets cost and catch
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import threshold_study as ts  # also puts the project on sys.path

from nlu import benchmarks, threshold
from nlu.datasets import Example
from nlu.vi.text import fold

TEMPERATURES = np.logspace(-1, 2.5, 71)  # as LinearIntentClassifier's
VECTORS = ts.ROOT / "var" / "embeddings" / "wordllama-l2-supercat-256"


def softmax(s: np.ndarray, t: float) -> np.ndarray:
    z = s * t
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Sketch:
    """Train on `examples`; `confidences` gives (top intent, max softmax) for texts."""

    def __init__(self, examples: Sequence[Example], dense_weight: float, embed) -> None:  # type: ignore[no-untyped-def]
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.svm import LinearSVC

        texts = [e.text for e in examples]
        self.labels = sorted({e.intent for e in examples})
        y = np.array([self.labels.index(e.intent) for e in examples])
        self.dense_weight, self.embed = dense_weight, embed

        def pre(t: str) -> str:
            return fold(t.lower())

        self.words = CountVectorizer(preprocessor=pre, token_pattern=r"(?u)\b\w+\b",
                                     ngram_range=(1, 2))  # fmt: skip
        self.chars = CountVectorizer(preprocessor=pre, analyzer="char_wb", ngram_range=(1, 5))
        counts = sp.hstack([self.words.fit_transform(texts), self.chars.fit_transform(texts)])
        counts = counts.tocsr()
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        self.idf = np.log((1 + counts.shape[0]) / (1 + df)) + 1
        x = self._design(counts, texts)

        def svm() -> LinearSVC:
            return LinearSVC(C=2.0, random_state=42)

        self.svm = svm().fit(x, y)
        self.temperature = self._fit_temperature(x, y, svm)

    def _design(self, counts: sp.csr_matrix, texts: list[str]) -> sp.csr_matrix:
        c = counts.astype(np.float64).tocsr(copy=True)
        c.data = (1 + np.log(c.data)) * self.idf[c.indices]
        norms = np.sqrt(np.asarray(c.multiply(c).sum(axis=1)).ravel())
        norms[norms == 0] = 1
        x = sp.diags(1 / norms) @ c
        if self.dense_weight:
            x = sp.hstack([x, sp.csr_matrix(self.dense_weight * self.embed(texts))])
        return x.tocsr()

    def _fit_temperature(self, x: sp.csr_matrix, y: np.ndarray, svm) -> float:  # type: ignore[no-untyped-def]
        from sklearn.model_selection import StratifiedKFold

        if np.bincount(y).min() < 3:
            return 5.0
        margins = np.zeros((x.shape[0], len(self.labels)))
        for tr, te in StratifiedKFold(3, shuffle=True, random_state=42).split(x, y):
            model = svm().fit(x[tr], y[tr])
            margins[np.ix_(te, model.classes_)] = model.decision_function(x[te])
        losses = [-np.log(softmax(margins, t)[np.arange(len(y)), y] + 1e-12).mean()
                  for t in TEMPERATURES]  # fmt: skip
        return float(TEMPERATURES[int(np.argmin(losses))])

    def scored(self, examples: Sequence[Example]) -> list[threshold.Scored]:
        texts = [e.text for e in examples]
        counts = sp.hstack([self.words.transform(texts), self.chars.transform(texts)]).tocsr()
        probs = softmax(self.svm.decision_function(self._design(counts, texts)), self.temperature)
        top = [self.labels[i] for i in probs.argmax(axis=1)]
        return [threshold.Scored(e.intent == ts.OOS, t == e.intent, float(p))
                for e, t, p in zip(examples, top, probs.max(axis=1), strict=True)]  # fmt: skip


def token_vectors():  # type: ignore[no-untyped-def]
    """The project's SentenceEmbedder over the fetched table (`make nlu-env`)."""
    from safetensors.numpy import load_file

    from nlu.runtime.components.embeddings import SentenceEmbedder

    table = load_file(str(VECTORS / "embedding.safetensors"))["embedding.weight"]
    tokenizer = (VECTORS / "tokenizer.json").read_text(encoding="utf-8")
    return SentenceEmbedder(table.astype(np.float16), tokenizer).embed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--draws", type=int, default=4, help="per source and shape")
    p.add_argument("--start", type=int, default=0, help="index of the first draw")
    p.add_argument("--dense-weight", type=float, default=0.0, help="0: no token vectors")
    p.add_argument("--budgets", default=str(ts.STUDY_BUDGET),
                   help="comma-separated in-scope budgets to choose the threshold under "
                   "(what each costs and catches, on the same draws)")  # fmt: skip
    p.add_argument("--root", type=Path, default=benchmarks.DEFAULT_ROOT)
    args = p.parse_args(argv)
    budgets = [float(b) for b in args.budgets.split(",")]
    embed = token_vectors() if args.dense_weight else None
    rows: dict[float, list[tuple[float, float, float]]] = {b: [] for b in budgets}
    for draw in ts.draws(args.root, args.draws, args.start):
        folds: list[threshold.Scored] = []
        for f in threshold.split_folds(draw.train, ts.OOS):
            folds += Sketch(f.train, args.dense_weight, embed).scored(f.val)
        on_eval = Sketch(draw.train, args.dense_weight, embed).scored(draw.evaluation)
        for budget in budgets:
            t = threshold.choose(folds, max_in_scope_loss=budget).threshold
            ins, oos = threshold.rates(on_eval, t)
            loss = threshold.rates(on_eval, 0.0)[0] - ins
            rows[budget].append((loss, ins, oos or 0.0))
            print(f"{draw.source} {draw.shape} #{draw.index} budget {budget}: t={t:.2f} "
                  f"in-scope {ins:.3f} OOS {oos:.3f} loss {loss:.4f}", flush=True)  # fmt: skip
    for budget, rs in rows.items():
        over = sum(r[0] > budget + 1e-9 for r in rs)
        print(
            f"{len(rs)} draws, dense weight {args.dense_weight}, budget {budget}: in-scope acc "
            f"(at the threshold) {statistics.fmean(r[1] for r in rs):.3f}, OOS recall "
            f"{statistics.fmean(r[2] for r in rs):.3f}, real in-scope loss "
            f"{statistics.fmean(r[0] for r in rs):.4f}, {over}/{len(rs)} over budget"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
