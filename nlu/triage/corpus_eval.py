"""Scoring triage on the triage corpus, the way the gateway reads a conversation.

The rows come from `nlu.runtime.severity_folds` (run in the NLU runtime): each carries the
learned model's verdict from a model that never saw the row's writer, and the project NLU
model's intent. Here each row is triaged as a live conversation would be: the earlier
messages first (a conversation's severity never falls), then the last one with its context.

A verdict that asks the safety question counts as flagging a hazard: the customer gets the
first safety step at once and the chat goes to the safety queue unless they answer no. So an
ask on a harmless message is a false alarm in the figures, and an ask on a hazard a catch.

Figures (all over the rows of one fold group):
  critical recall / precision  of "flagged" (critical or asked) against critical labels
  severity accuracy            the effective severity (asked = critical) equals the label
  queue accuracy               the queue equals the label (critical: safety)
  high recall                  high labels triaged high or critical
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nlu.client import SeverityReading
from nlu.triage.triage import Triage, TriageResult, max_severity, severity_rank

STYLES = ("vi", "vi_plain", "vi_teencode", "en")


@dataclass(frozen=True)
class Turn:
    """One customer message as the gateway reads it: its text and the NLU's reading."""

    text: str
    intent: str | None = None
    confidence: float = 0.0
    model: SeverityReading | None = None


def conversation_verdict(triage: Triage, turns: Sequence[Turn], misses: int = 0) -> TriageResult:
    """The triage of a conversation after its last message, as the engine reaches it: every
    message triaged in turn with the ones before it, the severity never falling."""
    if not turns:
        raise ValueError("a conversation needs at least one message")
    severity, asked, earlier_reasons = "low", False, []
    texts = [t.text for t in turns]
    for i, turn in enumerate(turns):
        last = i == len(turns) - 1
        t = triage.classify(
            turn.text,
            intent=turn.intent,
            confidence=turn.confidence,
            history=texts[:i],
            misses=misses if last else 0,
            model=turn.model,
        )
        if not last:
            if severity_rank(t.severity) > severity_rank(severity):
                earlier_reasons = list(t.reasons)
            severity, asked = max_severity(severity, t.severity), asked or t.ask
            continue
        final = max_severity(severity, t.severity)
        if final == "critical":
            reasons = t.reasons if t.severity == "critical" else (*earlier_reasons, *t.reasons)
            return replace(t, severity="critical", queue=triage.config.safety_queue,
                           reasons=tuple(reasons), ask=False)  # fmt: skip
        return replace(t, severity=final, ask=asked or t.ask)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Verdict:
    severity: str  # effective: asked counts as critical
    queue: str
    asked: bool


def load_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def triage_row(
    triage: Triage, row: Mapping[str, Any], *, use_model: bool = True, use_intent: bool = True
) -> Verdict:
    """The conversation's effective severity and queue after its last message."""
    history: Sequence[str] = row.get("history") or ()
    earlier = row.get("history_model") or [None] * len(history)
    turns = [
        Turn(h, model=SeverityReading.from_json(m) if use_model else None)
        for h, m in zip(history, earlier, strict=True)
    ]
    turns.append(
        Turn(
            row["text"],
            row.get("intent") if use_intent else None,
            float(row.get("confidence") or 0.0) if use_intent else 0.0,
            SeverityReading.from_json(row.get("model")) if use_model else None,
        )
    )
    t = conversation_verdict(triage, turns)
    if t.ask:
        return Verdict("critical", triage.config.safety_queue, True)
    return Verdict(t.severity, t.queue, False)


@dataclass
class Figures:
    n: int = 0
    critical: int = 0
    flagged: int = 0
    caught: int = 0
    asked: int = 0
    severity_ok: int = 0
    queue_ok: int = 0
    high: int = 0
    high_caught: int = 0
    direct: int = 0  # critical at once, no question asked
    direct_caught: int = 0

    def add(self, row: Mapping[str, Any], v: Verdict) -> None:
        gold = row["severity"]
        self.n += 1
        self.critical += gold == "critical"
        self.flagged += v.severity == "critical"
        self.caught += gold == "critical" and v.severity == "critical"
        self.asked += v.asked
        direct = v.severity == "critical" and not v.asked
        self.direct += direct
        self.direct_caught += direct and gold == "critical"
        self.severity_ok += v.severity == gold
        self.queue_ok += v.queue == row["queue"]
        self.high += gold == "high"
        self.high_caught += gold == "high" and severity_rank(v.severity) >= severity_rank("high")

    @staticmethod
    def _share(a: int, b: int) -> float | None:
        return round(a / b, 3) if b else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "critical_recall": self._share(self.caught, self.critical),
            "critical_precision": self._share(self.caught, self.flagged),
            "severity_accuracy": self._share(self.severity_ok, self.n),
            "queue_accuracy": self._share(self.queue_ok, self.n),
            "high_recall": self._share(self.high_caught, self.high),
            "asked": self.asked,
            "direct_precision": self._share(self.direct_caught, self.direct),
        }


def score(
    triage: Triage, rows: Iterable[Mapping[str, Any]], **how: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Figures overall, by style and by writer; plus the missed hazards."""
    total, by_style, by_writer = Figures(), defaultdict(Figures), defaultdict(Figures)
    missed: list[dict[str, Any]] = []
    for row in rows:
        v = triage_row(triage, row, **how)
        total.add(row, v)
        by_style[row.get("style") or "?"].add(row, v)
        by_writer[row.get("writer") or "?"].add(row, v)
        if row["severity"] == "critical" and v.severity != "critical":
            missed.append({"text": row["text"], "writer": row.get("writer")})
    return {
        **total.as_dict(),
        "by_style": {s: f.as_dict() for s, f in sorted(by_style.items())},
        "by_writer": {w: f.as_dict() for w, f in sorted(by_writer.items())},
    }, missed


__all__ = [
    "STYLES",
    "Figures",
    "Turn",
    "Verdict",
    "conversation_verdict",
    "load_rows",
    "score",
    "triage_row",
]


# -- choosing the thresholds on the leave-one-writer-out rows ------------------------------

DECISIVE_PRECISION = 0.9  # a score that pages the safety team at once must be this sure
PRECISION_FLOOR = 0.87  # the product bar (0.85) plus two points, so it holds blind
WRITER_RECALL_TARGET = 0.95  # every writer's own critical recall
_CRITICAL_AT = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85)
_ASK_AT = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)
_SHARES = (0.4, 0.5, 0.6, 0.7)


def _with(triage: Triage, **model: float) -> Triage:
    cfg = triage.config
    return Triage(
        triage.lexicon, cfg.model_copy(update={"model": cfg.model.model_copy(update=model)})
    )


def tune(triage: Triage, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Thresholds for careline.triage.model, chosen on `lowo` rows only.

    Critical recall first, as a missed hazard is the worst error: among the
    (critical_at, ask_at) pairs whose precision reaches PRECISION_FLOOR, every writer's
    recall WRITER_RECALL_TARGET, and whose direct verdicts (paged at once, no question) are
    right at DECISIVE_PRECISION, the one with the best pooled recall (ties: better
    precision, better severity accuracy, fewer questions asked). Then severity_min and
    queue_min for the best severity + queue accuracy at that pair."""
    rows = [r for r in rows if str(r.get("fold", "")).startswith("lowo")]
    if not rows:
        raise ValueError("no leave-one-writer-out rows to tune on")
    best: tuple[tuple[float, ...], dict[str, float]] | None = None
    for c in _CRITICAL_AT:
        for a in (x for x in _ASK_AT if x <= c):
            figures, _ = score(_with(triage, critical_at=c, ask_at=a), rows)
            writers = [w["critical_recall"] for w in figures["by_writer"].values()]
            if figures["critical_precision"] < PRECISION_FLOOR:
                continue
            if min(writers) < WRITER_RECALL_TARGET:
                continue
            if (figures["direct_precision"] or 0.0) < DECISIVE_PRECISION:
                continue
            key = (
                figures["critical_recall"], figures["critical_precision"],
                figures["severity_accuracy"], -figures["asked"], a, c,
            )  # fmt: skip
            if best is None or key > best[0]:
                best = (key, {"critical_at": c, "ask_at": a})
    if best is None:
        raise ValueError(f"no threshold pair keeps precision {PRECISION_FLOOR} on the folds")
    chosen = dict(best[1])
    top: tuple[float, ...] | None = None
    for sm in _SHARES:
        for qm in _SHARES:
            figures, _ = score(_with(triage, **chosen, severity_min=sm, queue_min=qm), rows)
            key = (figures["severity_accuracy"] + figures["queue_accuracy"], -sm, -qm)
            if top is None or key > top:
                top, picked = key, {"severity_min": sm, "queue_min": qm}
    chosen.update(picked)
    figures, _ = score(_with(triage, **chosen), rows)
    return {"chosen": chosen, "lowo": figures, "rule": tune.__doc__}
