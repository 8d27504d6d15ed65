"""Scoring triage on a labelled set (data/triage/labelled.jsonl) and reading JSONL input.

The labelled set carries no NLU intent: by default the score is for text-only signals, so the
lexicon has to carry critical recall on its own. An intents file (`{"text", "intent",
"confidence"}` per line) adds the NLU's reading where one is known.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from nlu.triage.triage import SEVERITIES, Triage, TriageResult

SPLITS = ("dev", "test", "all")


class JsonlError(ValueError):
    """A malformed input line; the message names the file and the line number."""


def iter_jsonl(stream: IO[str], name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line, streaming: constant memory."""
    for lineno, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise JsonlError(f"{name}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise JsonlError(f"{name}:{lineno}: expected a JSON object")
        text = obj.get("text")
        if not isinstance(text, str):
            raise JsonlError(f'{name}:{lineno}: missing or non-string "text"')
        yield lineno, obj


def classify_object(triage: Triage, obj: Mapping[str, Any]) -> TriageResult:
    """Classify one input object: text plus optional intent, confidence, history, misses."""
    history = obj.get("history") or ()
    return triage.classify(
        obj["text"],
        intent=obj.get("intent"),
        confidence=float(obj.get("confidence") or 0.0),
        history=[str(h) for h in history],
        misses=int(obj.get("misses") or 0),
    )


def load_intents(stream: IO[str], name: str) -> dict[str, tuple[str, float]]:
    """text -> (intent, confidence) from `{"text", "intent", "confidence"}` lines.

    `intent` may also be Rasa's parse shape `{"name": ..., "confidence": ...}`.
    """
    out: dict[str, tuple[str, float]] = {}
    for lineno, obj in iter_jsonl(stream, name):
        intent = obj.get("intent")
        confidence = obj.get("confidence")
        if isinstance(intent, dict):
            intent, confidence = intent.get("name"), intent.get("confidence")
        if not isinstance(intent, str):
            raise JsonlError(f'{name}:{lineno}: missing "intent"')
        out[obj["text"]] = (intent, float(confidence or 0.0))
    return out


@dataclass
class Report:
    split: str
    with_intents: bool = False
    n: int = 0
    confusion: dict[str, dict[str, int]] = field(
        default_factory=lambda: {g: dict.fromkeys(SEVERITIES, 0) for g in SEVERITIES}
    )
    queue_correct: int = 0
    missed_critical: list[dict[str, Any]] = field(default_factory=list)
    false_critical: list[dict[str, Any]] = field(default_factory=list)

    def add(self, gold: Mapping[str, Any], result: TriageResult) -> None:
        self.n += 1
        self.confusion[gold["severity"]][result.severity] += 1
        self.queue_correct += result.queue == gold["queue"]
        row = {"text": gold["text"], "predicted": result.severity, "reasons": result.reasons}
        if gold["severity"] == "critical" and result.severity != "critical":
            self.missed_critical.append(row)
        elif gold["severity"] != "critical" and result.severity == "critical":
            self.false_critical.append({**row, "gold": gold["severity"]})

    def level(self, name: str) -> dict[str, float | int]:
        """Precision, recall, F1 and support of one severity level."""
        tp = self.confusion[name][name]
        predicted = sum(self.confusion[g][name] for g in SEVERITIES)
        support = sum(self.confusion[name].values())
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        return {"precision": p, "recall": r, "f1": f1, "support": support}

    def as_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "with_intents": self.with_intents,
            "n": self.n,
            "levels": {s: self.level(s) for s in SEVERITIES},
            "confusion": {
                "order": list(SEVERITIES),
                "rows_gold_columns_predicted": [
                    [self.confusion[g][p] for p in SEVERITIES] for g in SEVERITIES
                ],
            },
            "severity_accuracy": sum(self.confusion[s][s] for s in SEVERITIES) / self.n
            if self.n
            else 0.0,
            "queue_accuracy": self.queue_correct / self.n if self.n else 0.0,
            "missed_critical": [{**m, "reasons": list(m["reasons"])} for m in self.missed_critical],
            "false_critical": [{**m, "reasons": list(m["reasons"])} for m in self.false_critical],
        }

    def format(self) -> str:
        d = self.as_dict()
        signals = "text + NLU intents" if self.with_intents else "text only (no NLU intent)"
        lines = [f"triage evaluation: split={self.split}, {self.n} messages, {signals}"]
        lines.append(f"{'level':<10}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}")
        for s in SEVERITIES:
            m = d["levels"][s]
            lines.append(
                f"{s:<10}{m['precision']:>10.3f}{m['recall']:>8.3f}{m['f1']:>8.3f}"
                f"{m['support']:>9d}"
            )
        lines.append("")
        lines.append("confusion (rows gold, columns predicted)")
        lines.append(f"{'':<10}" + "".join(f"{p:>10}" for p in SEVERITIES))
        for g, row in zip(SEVERITIES, d["confusion"]["rows_gold_columns_predicted"], strict=True):
            lines.append(f"{g:<10}" + "".join(f"{v:>10d}" for v in row))
        lines.append("")
        lines.append(f"severity accuracy {d['severity_accuracy']:.3f}")
        lines.append(f"queue accuracy    {d['queue_accuracy']:.3f}")
        crit = d["levels"]["critical"]
        lines.append(
            f"critical recall {crit['recall']:.3f}  critical precision {crit['precision']:.3f}"
        )
        lines.append("")
        lines.append(f"missed critical ({len(self.missed_critical)}):")
        lines += [f"  [{m['predicted']}] {m['text']}" for m in self.missed_critical] or ["  none"]
        lines.append(f"false critical ({len(self.false_critical)}):")
        lines += [f"  [gold {m['gold']}] {m['text']}" for m in self.false_critical] or ["  none"]
        return "\n".join(lines)


def evaluate(
    triage: Triage,
    rows: Iterable[tuple[int, dict[str, Any]]],
    name: str,
    split: str = "all",
    intents: Mapping[str, tuple[str, float]] | None = None,
) -> Report:
    """Score `triage` on labelled rows (from iter_jsonl) of the chosen split."""
    report = Report(split, with_intents=intents is not None)
    for lineno, row in rows:
        if row.get("severity") not in SEVERITIES or not isinstance(row.get("queue"), str):
            raise JsonlError(f"{name}:{lineno}: needs \"severity\" (one of {SEVERITIES}) and "
                             "\"queue\"")  # fmt: skip
        if split != "all" and row.get("split") != split:
            continue
        intent, confidence = (intents or {}).get(row["text"], (None, 0.0))
        result = triage.classify(row["text"], intent=intent, confidence=confidence)
        report.add(row, result)
    return report


def open_input(path: Path | str) -> IO[str]:
    """A text stream for a path, or stdin for '-'."""
    import sys

    if str(path) == "-":
        return sys.stdin
    return Path(path).open(encoding="utf-8")
