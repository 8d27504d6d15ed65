"""Severity triage: how urgent is this message, and which human queue should see it?

    critical  danger to people or property (explosion, fire, smoke, swelling, shock, a
              swallowed battery, burns) -> the safety queue, always
    high      device unusable or money at risk, or an angry customer (manager, press, police)
    normal    a real fault on a working device, a return, a safety QUESTION ("có bị nổ không?")
    low       questions and small talk

A missed hazard is the worst error this product can make, so the hazard lexicon alone can
make a message critical, whatever the NLU intent says; the NLU can add criticality (a hazard
intent, or the learned severity model reading a symptom no lexicon entry names), never remove
it. Between "surely a hazard" and "no sign of one" the model's score leaves a band where the
evidence is real but not decisive: the result is then `ask` (the bot gives the first safety
step and asks one quick question). Every verdict names the signals that decided it.
Idioms ("cháy hàng" = sold out), negations ("không có khói") and questions are recognised
explicitly and named in the reasons, so an agent can see why a message that looks alarming
was not paged.

Pure and synchronous: the lexicon is compiled once (`Triage.from_settings`), `classify` does
no I/O. Severity only ever rises within one call; keeping a conversation's severity from
falling on a later calm message is the caller's job (`max_severity`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.core.vocabulary import SEVERITIES, max_severity, severity_rank
from nlu.triage.lexicon import Lexicon, LexiconError, Reading
from nlu.vi.text import fold

if TYPE_CHECKING:
    from bot.core.settings import Settings, TriageSettings
    from nlu.client import SeverityReading


__all__ = [
    "SEVERITIES",
    "LexiconError",
    "Triage",
    "TriageResult",
    "max_severity",
    "raise_severity",
    "severity_rank",
]


def raise_severity(severity: str, steps: int, cap: str) -> str:
    """`severity` raised by `steps` levels, but not above `cap` (and never lowered)."""
    if steps <= 0 or severity_rank(severity) >= severity_rank(cap):
        return severity
    rank = min(severity_rank(severity) + steps, severity_rank(cap))
    return SEVERITIES[len(SEVERITIES) - rank]


@dataclass(frozen=True)
class TriageResult:
    severity: str
    queue: str
    reasons: tuple[str, ...]
    intent: str | None
    confidence: float
    ask: bool = False  # possible hazard, not decisive: ask the quick safety question

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "queue": self.queue,
            "reasons": list(self.reasons),
            "intent": self.intent,
            "confidence": self.confidence,
            "ask": self.ask,
        }


@dataclass(frozen=True)
class _Signal:
    """One piece of evidence: its level, the queue it implies (if any), and why."""

    severity: str
    queue: str | None
    reason: str


class Triage:
    def __init__(self, lexicon: Lexicon, config: TriageSettings) -> None:
        unknown = lexicon.queues() - set(config.queues)
        if unknown:
            raise LexiconError(
                f"{lexicon.path}: queues {sorted(unknown)} are not in careline.triage.queues "
                f"{config.queues}"
            )
        self.lexicon = lexicon
        self.config = config
        self._hazard_intents = frozenset(
            i for i, q in config.intent_queue.items() if q == config.safety_queue
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Triage:
        """Compile the lexicon named by careline.triage.lexicon (once, at startup)."""
        return cls(Lexicon.load(settings.path(settings.triage.lexicon)), settings.triage)

    def classify(
        self,
        text: str,
        *,
        intent: str | None = None,
        confidence: float = 0.0,
        history: Sequence[str] = (),
        misses: int = 0,
        model: SeverityReading | None = None,
    ) -> TriageResult:
        """Triage one customer message.

        `intent`/`confidence`: the NLU's reading, if any. `history`: the customer's earlier
        messages in this conversation, oldest first (used for the topic of a message that has
        none, and to notice a repeated message). `misses`: how many of the bot's answers in a
        row did not help. `model`: the learned severity verdict from the NLU service (it read
        this message with the earlier ones), if any.
        """
        reading = self.lexicon.read(text)
        signals = self._hazard_signals(reading)
        ask_reason = None
        if model is None:
            signals += self._intent_signals(reading, intent, confidence)
        else:
            # The model learned severity from labelled messages; the intent -> severity map
            # (hazard intents included) is a hand-written proxy for it, and on the writer
            # folds it only added false alarms. The intent still routes (see _queue). An
            # explicit request (a person, a complaint about staff) keeps the severity the
            # product gives it instead of the model's non-critical reading; the lexicon's own
            # signals (a manager, the press, a lawyer) still raise it.
            found, ask_reason = self._model_signals(reading, model)
            requested = self._intent_signals(reading, intent, confidence)
            if requested and intent in self.config.intent_severity_with_model:
                found = [s for s in found if s.severity == "critical"] + requested
            signals += found
        signals += [
            _Signal(sig.severity, sig.queue, f"{sig.label}: '{q}'") for sig, q in reading.signals
        ]
        severity = max((s.severity for s in signals), key=severity_rank, default="low")
        reasons = [s.reason for s in sorted(signals, key=lambda s: -severity_rank(s.severity))]
        if severity != "critical":
            severity = self._raise(severity, text, reading, history, misses, reasons)
        reasons += reading.explained
        queue = self._queue(severity, signals, reading, intent, confidence, history, model)
        if ask_reason is None and reading.fears:
            ask_reason = f"worried about a hazard: '{reading.fears[0]}': safety question asked"
        ask = severity != "critical" and ask_reason is not None
        if ask:
            reasons.append(ask_reason)
        return TriageResult(severity, queue, tuple(reasons), intent, confidence, ask)

    # -- evidence --------------------------------------------------------------------------

    def _hazard_signals(self, reading: Reading) -> list[_Signal]:
        safety = self.config.safety_queue
        out = [
            _Signal("critical", safety, f"hazard term '{m.quote}' ({m.label})")
            for m in reading.hazards
        ]
        out += [
            _Signal(
                self.config.hazard_question_severity,
                safety,
                f"safety question, no incident reported: '{frame}' ({m.label})",
            )
            for m, frame in reading.questions
        ]
        return out

    def _model_signals(
        self, reading: Reading, model: SeverityReading
    ) -> tuple[list[_Signal], str | None]:
        """The learned model's evidence, and why to ask the safety question (or None).

        Where the lexicon explained the hazard words away (an idiom, a negation, a question),
        the model must be surer: those words are exactly what it may over-read."""
        cfg = self.config.model
        p = model.critical
        explained = not reading.hazards and bool(reading.explained or reading.questions)
        needed = cfg.critical_explained_at if explained else cfg.critical_at
        label = f"severity model: critical {p:.2f}"
        if p >= needed:
            return [_Signal("critical", self.config.safety_queue, label)], None
        out: list[_Signal] = []
        rest = {k: v for k, v in model.severity_scores.items() if k != "critical"}
        total = sum(rest.values())
        if total > 0:
            best = max(rest, key=lambda k: rest[k])
            share = rest[best] / total
            if share >= cfg.severity_min and best != "low":
                queue = max(model.queue_scores, key=lambda k: model.queue_scores[k], default=None)
                if queue == self.config.safety_queue or (
                    queue and model.queue_scores[queue] < cfg.queue_min
                ):
                    queue = None
                out.append(_Signal(best, queue, f"severity model: {best} {share:.2f}"))
        ask = None
        if p >= cfg.ask_at and not explained:
            ask = f"{label}: possible hazard, safety question asked"
        return out, ask

    def _intent_signals(
        self, reading: Reading, intent: str | None, confidence: float
    ) -> list[_Signal]:
        cfg = self.config
        if not intent:
            return []
        label = f"intent {intent} ({confidence:.2f})"
        if intent in self._hazard_intents:
            explained = not reading.hazards and bool(reading.explained or reading.questions)
            needed = (
                cfg.hazard_intent_explained_min_confidence
                if explained
                else cfg.hazard_intent_min_confidence
            )
            if confidence >= needed:
                return [_Signal("critical", cfg.safety_queue, label)]
            if confidence >= cfg.hazard_intent_min_confidence:
                why = f"{label} not trusted: the words read as harmless (needs {needed})"
                return [_Signal("low", cfg.safety_queue, why)]
            return []
        if confidence < cfg.intent_min_confidence:
            return []
        severity = cfg.intent_severity.get(intent, "low")
        return [_Signal(severity, cfg.intent_queue.get(intent), label)]

    def _raise(
        self,
        severity: str,
        text: str,
        reading: Reading,
        history: Sequence[str],
        misses: int,
        reasons: list[str],
    ) -> str:
        """Frustration and repeated bot misses each raise one level (up to raise_cap)."""
        cfg = self.config
        upset = self._frustration(text, reading, history)
        steps = 0
        if upset:
            steps += 1
            reasons.extend(upset)
        if misses >= cfg.misses_raise_at:
            steps += 1
            reasons.append(f"{misses} unanswered messages in a row")
        raised = raise_severity(severity, steps, cfg.raise_cap)
        if raised != severity:
            reasons.append(f"raised {severity} -> {raised}")
        return raised

    def _frustration(self, text: str, reading: Reading, history: Sequence[str]) -> list[str]:
        cfg = self.config
        out = [f"{self.lexicon.frustration_label}: '{q}'" for q in reading.frustration]
        letters = [c for c in text if c.isalpha() and (c.isupper() or c.islower())]
        upper = sum(c.isupper() for c in letters)
        if len(letters) >= cfg.caps_min_letters and upper >= cfg.caps_ratio * len(letters):
            out.append("message in ALL CAPS")
        bangs = text.count("!")
        if bangs >= cfg.exclamations_raise_at:
            out.append(f"{bangs} exclamation marks")
        recent = history[-cfg.repeat_window :] if cfg.repeat_window else ()
        key = fold(text).strip()
        if key and any(fold(h).strip() == key for h in recent):
            out.append("customer repeated the same message")
        return out

    # -- routing ---------------------------------------------------------------------------

    def _queue(
        self,
        severity: str,
        signals: Sequence[_Signal],
        reading: Reading,
        intent: str | None,
        confidence: float,
        history: Sequence[str],
        model: SeverityReading | None = None,
    ) -> str:
        """Critical: safety. Else the queue of the strongest evidence that names one, then
        the severity model's queue, then the NLU intent, then topic words of this message,
        then of the earlier ones."""
        cfg = self.config
        if severity == "critical":
            return cfg.safety_queue
        ranked = sorted(signals, key=lambda s: -severity_rank(s.severity))
        for s in ranked:
            if s.queue and severity_rank(s.severity) > severity_rank("low"):
                return s.queue
        if model is not None and model.queue_scores:
            best = max(model.queue_scores, key=lambda k: model.queue_scores[k])
            if best in cfg.queues and model.queue_scores[best] >= cfg.model.queue_min:
                return best
        confident = bool(intent) and confidence >= cfg.intent_min_confidence
        if confident and intent in cfg.intent_queue and intent not in self._hazard_intents:
            return cfg.intent_queue[intent]
        if reading.topic:
            return reading.topic
        for earlier in reversed(history):
            topic = self.lexicon.topic_of(earlier)
            if topic:
                return topic
        return cfg.default_queue
