"""Classification metrics for intent evaluation, without scikit-learn.

Pure Python so the gateway's tests can check them on hand-made cases, and so the report
code is the same whichever runtime prints it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class ClassReport:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Report:
    n: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, ClassReport] = field(default_factory=dict)
    confusions: list[tuple[str, str, int]] = field(default_factory=list)  # (gold, pred, count)

    def as_dict(self) -> dict:
        return {
            "n": self.n,
            "accuracy": round(self.accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "top_confusions": [
                {"gold": g, "predicted": p, "count": c} for g, p, c in self.confusions
            ],
        }


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def classification_report(
    gold: Sequence[str], pred: Sequence[str | None], top_confusions: int = 10
) -> Report:
    """Accuracy, macro-F1 (over every label seen in gold or predictions), confusions."""
    if len(gold) != len(pred):
        raise ValueError("gold and pred differ in length")
    n = len(gold)
    if n == 0:
        return Report(0, 0.0, 0.0)
    pred_s = [p if p is not None else "<none>" for p in pred]
    tp: Counter = Counter()
    gold_count = Counter(gold)
    pred_count = Counter(pred_s)
    pairs: Counter = Counter()
    for g, p in zip(gold, pred_s, strict=True):
        if g == p:
            tp[g] += 1
        else:
            pairs[(g, p)] += 1
    per_class = {}
    for label in sorted(set(gold_count) | set(pred_count)):
        prec = tp[label] / pred_count[label] if pred_count[label] else 0.0
        rec = tp[label] / gold_count[label] if gold_count[label] else 0.0
        per_class[label] = ClassReport(prec, rec, _f1(prec, rec), gold_count[label])
    macro = sum(c.f1 for c in per_class.values()) / len(per_class)
    confusions = [(g, p, c) for (g, p), c in pairs.most_common(top_confusions)]
    return Report(n, sum(tp.values()) / n, macro, per_class, confusions)


def out_of_scope_scores(
    gold: Sequence[str], pred: Sequence[str | None], oos_labels: Sequence[str]
) -> dict[str, float]:
    """In-scope accuracy and out-of-scope recall, as in CLINC150 (Larson et al. 2019).

    A prediction counts as out-of-scope when it is one of `oos_labels` (e.g. the fallback
    intent `nlu_fallback`, or the data set's own `oos` label).
    """
    oos = set(oos_labels)
    ins = [(g, p) for g, p in zip(gold, pred, strict=True) if g not in oos]
    outs = [(g, p) for g, p in zip(gold, pred, strict=True) if g in oos]
    return {
        "in_scope_accuracy": sum(g == p for g, p in ins) / len(ins) if ins else 0.0,
        "oos_recall": sum(p in oos for _, p in outs) / len(outs) if outs else 0.0,
        "n_in_scope": float(len(ins)),
        "n_oos": float(len(outs)),
    }
