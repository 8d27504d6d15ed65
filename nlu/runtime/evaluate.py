"""`careline nlu eval`, the scoring half: load a trained model, parse a labelled test set,
print accuracy, macro-F1, per-slice figures and the worst confusions.

NLU runtime only (imports rasa through NLUModel). Training is done before this runs by the
gateway-side driver; keeping scoring in-process with the model avoids an HTTP hop per example.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nlu.datasets import Example, load_rasa_nlu
from nlu.scores import classification_report, out_of_scope_scores

FALLBACK_INTENT = "nlu_fallback"
BATCH = 64


@dataclass(frozen=True)
class Prediction:
    intent: str | None  # what the model answered (nlu_fallback included)
    top: str | None  # the classifier's best intent, before any fallback
    confidence: float  # ...and its confidence

    def with_threshold(self, threshold: float | None) -> str | None:
        """The answer under another fallback threshold (FallbackClassifier's rule: below it,
        fall back); None keeps the model's own answer."""
        if threshold is None:
            return self.intent
        return FALLBACK_INTENT if self.top is None or self.confidence < threshold else self.top


def _prediction(parsed: dict) -> Prediction:
    ranking = [r for r in parsed.get("intent_ranking") or [] if r.get("name") != FALLBACK_INTENT]
    top = ranking[0] if ranking else {}
    return Prediction(
        parsed["intent"].get("name"), top.get("name"), float(top.get("confidence") or 0.0)
    )


def predict(model_path: Path, examples: list[Example]) -> list[Prediction]:
    from nlu.runtime.model import NLUModel

    model = NLUModel.load(model_path)
    preds: list[Prediction] = []
    started = time.monotonic()
    for i in range(0, len(examples), BATCH):
        chunk = examples[i : i + BATCH]
        for parsed in model.parse_many([ex.text for ex in chunk]):
            preds.append(_prediction(parsed))
        done = min(i + BATCH, len(examples))
        print(f"\rscoring {done}/{len(examples)}", end="", file=sys.stderr, flush=True)
    print(
        f"\rscored {len(examples)} examples in {time.monotonic() - started:.1f} s", file=sys.stderr
    )
    return preds


def slice_reports(examples: list[Example], preds: list[str | None]) -> dict[str, dict]:
    by_slice: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        for s in ex.slices:
            by_slice.setdefault(s, []).append(i)
    out = {}
    for name, idx in by_slice.items():
        rep = classification_report([examples[i].intent for i in idx], [preds[i] for i in idx])
        out[name] = rep.as_dict()
        if name != "all":
            out[name].pop("top_confusions")
    out["all"]["fallback_rate"] = round(
        sum(p == FALLBACK_INTENT for p in preds) / max(1, len(preds)), 4
    )
    return out


def render(report: dict[str, dict]) -> str:
    lines = [f"{'slice':<20}{'n':>6}{'accuracy':>10}{'macro-F1':>10}"]
    order = sorted(report, key=lambda s: (s != "all", s))
    for s in order:
        r = report[s]
        lines.append(f"{s:<20}{r['n']:>6}{r['accuracy']:>10.3f}{r['macro_f1']:>10.3f}")
    lines.append(f"fallback rate: {report['all']['fallback_rate']:.3f}")
    conf = report["all"].get("top_confusions") or []
    if conf:
        lines.append("top confusions (gold -> predicted: count):")
        lines += [f"  {c['gold']} -> {c['predicted']}: {c['count']}" for c in conf]
    return "\n".join(lines)


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(prog="careline nlu eval (runtime)")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--test", type=Path, required=True, help="Rasa NLU YAML file or folder")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.add_argument(
        "--threshold",
        type=float,
        help="score with this fallback threshold instead of the model's own (chosen on "
        "validation data: see nlu/threshold.py)",
    )
    p.add_argument(
        "--scores",
        type=Path,
        help="write [gold, top intent, confidence] per example as JSON (for threshold tuning)",
    )
    p.add_argument(
        "--oos-label",
        help="the data set's out-of-scope label; a fallback prediction then counts as it, and "
        "in-scope accuracy and out-of-scope recall are reported",
    )
    args = p.parse_args(argv)
    examples = load_rasa_nlu(args.test)
    if not examples:
        print(f"error: no labelled examples in {args.test}", file=sys.stderr)
        return 2
    predictions = predict(args.model, examples)
    if args.scores:
        rows = [
            [ex.intent, p.top, p.confidence] for ex, p in zip(examples, predictions, strict=True)
        ]
        args.scores.write_text(json.dumps(rows, ensure_ascii=False))
    preds = [p.with_threshold(args.threshold) for p in predictions]
    if args.oos_label:
        preds = [args.oos_label if p == FALLBACK_INTENT else p for p in preds]
    report = slice_reports(examples, preds)
    if args.oos_label:
        gold = [ex.intent for ex in examples]
        oos = out_of_scope_scores(gold, preds, [args.oos_label])
        report["all"].update({k: round(v, 4) for k, v in oos.items()})
        print(
            f"in-scope accuracy {oos['in_scope_accuracy']:.3f}, "
            f"out-of-scope recall {oos['oos_recall']:.3f}"
        )
    report["model"] = {"file": args.model.name, "threshold": args.threshold}  # type: ignore[assignment]
    print(render({k: v for k, v in report.items() if k != "model"}))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
