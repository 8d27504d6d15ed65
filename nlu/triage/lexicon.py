"""The triage lexicon (data/triage/lexicon.yml): reading a message.

The lexicon is data so that support leads can add a hazard word or an idiom without a code
change; lexicon_file.py turns it into pattern sets once, at startup, and `Lexicon.read`
(here) applies it to one message: hazard mentions (active, safety questions, or explained
away), non-hazard signals, frustration words and the message's topic. Severity arithmetic is
triage.py's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from nlu.triage.lexicon_file import load_compiled
from nlu.triage.patterns import (
    Hit,
    WordSet,
)
from nlu.triage.terms import (
    SIGNAL_SEVERITIES,
    CompiledLexicon,
    Frame,
    HazardCategory,
    Idiom,
    LexiconError,
    Mention,
    Reading,
    Signal,
)
from nlu.triage.tokens import Token, quote, tokenize
from nlu.vi.text import language_votes

__all__ = [
    "SIGNAL_SEVERITIES",
    "HazardCategory",
    "Idiom",
    "Lexicon",
    "LexiconError",
    "Mention",
    "Reading",
    "Signal",
]


@dataclass
class Lexicon(CompiledLexicon):
    """The compiled lexicon, read against one message at a time."""

    @classmethod
    def load(cls, path: Path) -> Lexicon:
        """Read and compile the lexicon; raise LexiconError naming the file and entry."""
        compiled = load_compiled(path)
        return cls(**{f.name: getattr(compiled, f.name) for f in fields(compiled)})

    def queues(self) -> set[str]:
        """Every queue the lexicon names (checked against careline.triage.queues)."""
        named = {s.queue for s in self.signal_list if s.queue}
        return named | set(self.topic_order)

    # -- reading ---------------------------------------------------------------------------

    def read(self, text: str) -> Reading:
        """Everything the lexicon says about `text` (pure, no I/O)."""
        tokens = tokenize(text, self.aliases)
        if not tokens:
            return Reading()
        # A message that reads as English: its bare words are English words ("the" is not
        # "thẻ"). Never applied to hazard patterns: a wrong language guess must not hide one.
        strict = _reads_english(tokens)
        explained: list[str] = []
        idioms = [h for h in self.idioms.find(tokens, strict) if _applies(tokens, h)]
        hits = self._hazard_hits(text, tokens, idioms, explained)
        covered = {i for h in hits for i in range(h.start, h.end)}
        active: list[Mention] = []
        questions: list[tuple[Mention, str]] = []
        fears: list[str] = []
        for mention in _merge(text, tokens, hits):
            negators = _negators(mention, [self._negator(tokens, h, covered) for h in mention.hits])
            if all(n is not None for n in negators):
                first = min(n for n in negators if n is not None)
                explained.append(
                    f"negated, not a hazard: '{quote(text, tokens, first, mention.end)}'"
                )
                continue
            found = self._question_frame(tokens, mention)
            if found is not None:
                frame, span = found
                questions.append((mention, quote(text, tokens, *span)))
                if frame.fear:
                    fears.append(quote(text, tokens, *span))
            else:
                active.append(mention)
        return Reading(
            hazards=tuple(active),
            questions=tuple(questions),
            fears=tuple(fears),
            explained=tuple(explained),
            signals=self._signals(text, tokens, strict, idioms),
            frustration=tuple(
                dict.fromkeys(
                    quote(text, tokens, h.start, h.end)
                    for h in self.frustration.find(tokens, strict)
                )
            ),
            topic=self.topic(tokens, strict),
        )

    def topic(self, tokens: Sequence[Token], strict: bool = False) -> str | None:
        """The queue whose topic words occur most often (ties: lexicon order)."""
        counts: dict[str, int] = {}
        for h in self.topics.find(tokens, strict):
            counts[h.value] = counts.get(h.value, 0) + 1
        if not counts:
            return None
        return max(self.topic_order, key=lambda q: (counts.get(q, 0), -self.topic_order.index(q)))

    def topic_of(self, text: str) -> str | None:
        tokens = tokenize(text, self.aliases)
        return self.topic(tokens, _reads_english(tokens))

    def _hazard_hits(
        self,
        text: str,
        tokens: Sequence[Token],
        idioms: Sequence[Hit[Idiom]],
        explained: list[str],
    ) -> list[Hit[HazardCategory]]:
        """Hazard hits minus those lying inside an idiom ("cháy hàng", "deal nổ")."""
        kept: list[Hit[HazardCategory]] = []
        for h in self.hazards.find(tokens):
            idiom = next((i for i in idioms if h.within(i.start, i.end)), None)
            if idiom is None:
                kept.append(h)
                continue
            note = (
                f"not a hazard: '{quote(text, tokens, idiom.start, idiom.end)}' "
                f"({idiom.value.meaning})"
            )
            if note not in explained:
                explained.append(note)
        return kept

    def _negator(
        self, tokens: Sequence[Token], hit: Hit[HazardCategory], covered: set[int]
    ) -> int | None:
        """Index of the negator of a hazard hit, else None.

        Either right before it with only fillers or other hazard words between ("không có
        khói", "no sparks or smoke"), or swallowed by a gap inside it ("pin không bị phồng").
        The hit's own language picks the negators: in "dt no bi chay" the "no" is "nó" (it).
        """
        english = hit.pattern.english
        negators, fillers = self.negators[english], self.fillers[english]
        for i in range(hit.start, hit.end):
            if tokens[i] in negators:
                return i
        clause = tokens[hit.start].clause
        for i in range(hit.start - 1, max(-1, hit.start - 1 - self.negation_window), -1):
            tok = tokens[i]
            if tok.clause != clause:
                return None
            if tok in negators:
                return i
            if tok not in fillers and i not in covered:
                return None
        return None

    def _question_frame(
        self, tokens: Sequence[Token], m: Mention
    ) -> tuple[Frame, tuple[int, int]] | None:
        """Token span of a question frame around the mention, if it is only asked about.

        Not when an incident marker is inside the mention or touches it ("nổ rồi", "vừa bị
        phồng", "exploded"), and not for categories that are never hypothetical.
        """
        if not all(c.questions for c in m.categories):
            return None
        clause = tokens[m.start].clause
        near = tokens[max(0, m.start - 1) : m.end + 1]
        if any(t.clause == clause and t in self.incident_markers for t in near):
            return None
        in_clause = [t for t in tokens if t.clause == clause]
        for frame in self.frames:
            if frame.english != m.english or any(t in frame.unless for t in in_clause):
                continue
            span = _frame_span(frame, tokens, m, clause, self.particles)
            if span is not None:
                return frame, span
        return None

    def _signals(
        self, text: str, tokens: Sequence[Token], strict: bool, idioms: Sequence[Hit[Idiom]]
    ) -> tuple[tuple[Signal, str], ...]:
        """First hit of each signal, including what idioms mean ("cháy màn" = display fault)."""
        by_key = {s.key: s for s in self.signal_list}
        found = [(h.value, h.start, h.end) for h in self.signals.find(tokens, strict)]
        found += [(by_key[h.value.signal], h.start, h.end) for h in idioms if h.value.signal]
        seen: dict[str, tuple[Signal, str]] = {}
        for sig, start, end in sorted(found, key=lambda f: f[1]):
            seen.setdefault(sig.key, (sig, quote(text, tokens, start, end)))
        return tuple(seen.values())


def _reads_english(tokens: Sequence[Token]) -> bool:
    """At least two English function words and more than Vietnamese chat words.

    Stricter than nlu.vi.text.detect_language on purpose: one English word ("laptop chay
    cham qua") must not make bare Vietnamese unreadable.
    """
    if any(t.accented for t in tokens):
        return False
    vi, en = language_votes(t.raw for t in tokens)
    return en >= 2 and en > vi


def _negators(mention: Mention, found: list[int | None]) -> list[int | None]:
    """A hit inside a negated hit is negated too: "không có mùi khét" negates "khét"."""
    out = list(found)
    for i, hit in enumerate(mention.hits):
        if out[i] is None:
            outer = [
                n
                for other, n in zip(mention.hits, found, strict=True)
                if n is not None and hit.within(other.start, other.end)
            ]
            out[i] = min(outer) if outer else None
    return out


def _applies(tokens: Sequence[Token], idiom: Hit[Idiom]) -> bool:
    """The idiom reading holds: no `unless` word in its clause, a `requires` word if asked."""
    clause = tokens[idiom.start].clause
    if any(t in idiom.value.unless for t in tokens if t.clause == clause):
        return False
    requires = idiom.value.requires
    return requires is None or any(t in requires for t in tokens)


def _merge(
    text: str, tokens: Sequence[Token], hits: Iterable[Hit[HazardCategory]]
) -> list[Mention]:
    """Overlapping hits become one mention ("bị phồng" + "phồng pin" = "bị phồng pin")."""
    spans: list[list[Any]] = []
    for h in sorted(hits, key=lambda h: (h.start, h.end)):
        if spans and h.start < spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], h.end)
            spans[-1][2].append(h)
        else:
            spans.append([h.start, h.end, [h]])
    return [Mention(s, e, tuple(hits), quote(text, tokens, s, e)) for s, e, hits in spans]


def _frame_span(
    frame: Frame, tokens: Sequence[Token], m: Mention, clause: int, particles: WordSet
) -> tuple[int, int] | None:
    start, end = m.start, m.end
    if frame.left is not None:
        start = -1
        for i in range(max(0, m.start - frame.left_gap - 8), m.start):
            if tokens[i].clause != clause:
                continue
            e = frame.left.match_at(tokens, i)
            if e is not None and m.start - e <= frame.left_gap:
                start = i
                break
        if start < 0:
            return None
    if frame.right is not None:
        found = None
        for j in range(m.end, min(len(tokens), m.end + frame.right_gap + 1)):
            if tokens[j].clause != clause:
                break
            e = frame.right.match_at(tokens, j)
            if e is not None:
                found = e
                break
        if found is None:
            return None
        if frame.final and not _clause_ends(tokens, found, clause, particles):
            return None
        end = found
    return start, end


def _clause_ends(tokens: Sequence[Token], i: int, clause: int, particles: WordSet) -> bool:
    """Only question particles ("ạ", "shop", "vậy") follow tokens[i:] in the clause."""
    for tok in tokens[i:]:
        if tok.clause != clause:
            return True
        if tok not in particles:
            return False
    return True
