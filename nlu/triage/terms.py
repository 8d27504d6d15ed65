"""The triage lexicon's vocabulary: what a hazard, an idiom, a question frame and a signal
are, what the lexicon found in a message (`Reading`), and the compiled lexicon's parts.

Kept apart from reading (lexicon.py) and from building them out of YAML (lexicon_file.py),
so each of the three reads on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nlu.triage.patterns import (
    Hit,
    Pattern,
    PatternSet,
    WordSet,
)

SIGNAL_SEVERITIES = ("high", "normal")


class LexiconError(ValueError):
    """The lexicon file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class HazardCategory:
    key: str
    label: str
    questions: bool = True  # may a question frame turn a mention into a safety question?


@dataclass(frozen=True)
class Idiom:
    meaning: str
    unless: WordSet  # any of these in the clause: the words mean what they say after all
    requires: WordSet | None = None  # the idiom needs one of these somewhere in the message
    signal: str | None = None  # what the words do mean: a key of `signals` (a display fault)


@dataclass(frozen=True)
class Frame:
    """A question/hypothetical frame around hazard words: LEFT … HAZARD … RIGHT$."""

    text: str
    english: bool  # applies to hazards found by English patterns, else to Vietnamese ones
    left: Pattern | None
    left_gap: int
    right: Pattern | None
    right_gap: int
    final: bool
    unless: WordSet
    fear: bool = False  # "sợ nổ", "afraid it will explode": worry now, worth asking about


@dataclass(frozen=True)
class Signal:
    key: str
    label: str
    severity: str
    queue: str | None


@dataclass(frozen=True)
class Mention:
    """Overlapping hazard hits merged into one stretch of the message."""

    start: int
    end: int
    hits: tuple[Hit[HazardCategory], ...]
    quote: str

    @property
    def categories(self) -> tuple[HazardCategory, ...]:
        return tuple(dict.fromkeys(h.value for h in self.hits))

    @property
    def label(self) -> str:
        return " / ".join(dict.fromkeys(c.label for c in self.categories))

    @property
    def english(self) -> bool:
        """Found by English patterns only: English negations and question frames apply."""
        return all(h.pattern.english for h in self.hits)


@dataclass(frozen=True)
class Reading:
    """What the lexicon found in one message."""

    hazards: tuple[Mention, ...] = ()  # active: critical
    questions: tuple[tuple[Mention, str], ...] = ()  # (mention, frame quote): safety question
    fears: tuple[str, ...] = ()  # quotes of questions asked in fear: the bot asks back
    explained: tuple[str, ...] = ()  # human-readable: idioms and negations that were ignored
    signals: tuple[tuple[Signal, str], ...] = ()  # (signal, quote), first hit per signal
    frustration: tuple[str, ...] = ()  # quotes
    topic: str | None = None


@dataclass
class CompiledLexicon:
    """The lexicon file compiled into pattern sets (what lexicon_file.py builds)."""

    path: Path
    aliases: dict[str, tuple[str, ...]]
    hazards: PatternSet[HazardCategory]
    idioms: PatternSet[Idiom]
    negators: dict[bool, WordSet]  # keyed by: the hazard hit's pattern is English
    fillers: dict[bool, WordSet]
    negation_window: int
    frames: tuple[Frame, ...]
    particles: WordSet
    incident_markers: WordSet
    signals: PatternSet[Signal]
    frustration_label: str
    frustration: PatternSet[str]
    topics: PatternSet[str]
    topic_order: tuple[str, ...]
    signal_list: tuple[Signal, ...] = field(default=())
