"""The triage lexicon (data/triage/lexicon.yml): loading, validation and reading a message.

The lexicon is data so that support leads can add a hazard word or an idiom without a code
change; this module turns it into pattern sets once, at startup, and `Lexicon.read` applies
it to one message: hazard mentions (active, safety questions, or explained away), non-hazard
signals, frustration words and the message's topic. Severity arithmetic is triage.py's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nlu.files import read_yaml
from nlu.triage.patterns import (
    GAP_MARKS,
    Hit,
    Pattern,
    PatternError,
    PatternSet,
    WordSet,
    compile_pattern,
)
from nlu.triage.tokens import Token, quote, tokenize
from nlu.vi.text import language_votes, nfc

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
class Lexicon:
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

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> Lexicon:
        """Read and compile the lexicon; raise LexiconError naming the file and entry."""
        try:
            doc = read_yaml(path)
        except FileNotFoundError as e:
            raise LexiconError(f"{path}: triage lexicon not found") from e
        except yaml.YAMLError as e:
            raise LexiconError(f"{path}: not valid YAML: {e}") from e
        try:
            return _build(path, doc)
        except (PatternError, KeyError, TypeError, ValueError) as e:
            raise LexiconError(f"{path}: {e}") from e

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


# -- building from YAML ----------------------------------------------------------------------


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise ValueError(f"{where}: expected a list of words or patterns")
    if any(isinstance(v, bool) for v in value):  # YAML reads a bare no/yes/on/off as a bool
        raise ValueError(f'{where}: quote yes/no/on/off words, e.g. "no"')
    return [str(v) for v in value]


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a mapping")
    return value


def _compile_all(
    where: str, patterns: list[str], max_gap: int, needs: frozenset[str]
) -> list[Pattern]:
    if not patterns:
        raise ValueError(f"{where}: needs at least one pattern")
    return [compile_pattern(p, max_gap, needs) for p in patterns]


def _aliases(doc: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for expansion, variants in _mapping(doc.get("aliases") or {}, "aliases").items():
        words = tuple(nfc(str(expansion)).lower().split())
        for v in _strings(variants, f"aliases.{expansion}"):
            key = nfc(v).lower()
            if key in out and out[key] != words:
                raise ValueError(f"aliases: {v!r} expands to two different words")
            out[key] = words
    return out


def _by_language(negation: Mapping[str, Any], key: str) -> dict[bool, WordSet]:
    """{is English: words} from negation.vi.<key> and negation.en.<key>."""
    out = {}
    for lang in ("vi", "en"):
        section = _mapping(negation.get(lang) or {}, f"negation.{lang}")
        out[lang == "en"] = WordSet(_strings(section.get(key), f"negation.{lang}.{key}"))
    return out


def _frame(spec: Any, gap: int, needs: frozenset[str]) -> Frame:
    spec = _mapping(spec, "questions entry")
    text = str(spec["frame"])
    if spec.get("lang") not in ("vi", "en"):
        raise ValueError(f"questions: {text!r} needs lang: vi or lang: en")
    parts = text.split()
    marks = [i for i, p in enumerate(parts) if p.upper() == "HAZARD"]
    if len(marks) != 1:
        raise ValueError(f"questions: {text!r} needs exactly one HAZARD")
    left, right = parts[: marks[0]], parts[marks[0] + 1 :]
    left_gap = gap if left and left[-1] in GAP_MARKS else 0
    left = left[:-1] if left_gap else left
    right_gap = gap if right and right[0] in GAP_MARKS else 0
    right = right[1:] if right_gap else right
    final = bool(right) and right[-1].endswith("$")
    if final:
        right[-1] = right[-1][:-1]
    if not left and not right:
        raise ValueError(f"questions: {text!r} has no words around HAZARD")
    return Frame(
        text=text,
        english=spec["lang"] == "en",
        left=compile_pattern(" ".join(left), gap, needs) if left else None,
        left_gap=left_gap,
        right=compile_pattern(" ".join(right), gap, needs) if right else None,
        right_gap=right_gap,
        final=final,
        unless=WordSet(_strings(spec.get("unless"), f"questions {text!r}.unless")),
        fear=bool(spec.get("fear", False)),
    )


def _build(path: Path, doc: Any) -> Lexicon:
    doc = _mapping(doc, "top level")
    if doc.get("version") != 1:
        raise ValueError("unsupported or missing version (expected 1)")
    gap = int(doc.get("max_gap", 3))
    frame_gap = int(doc.get("frame_gap", gap))
    needs = frozenset(nfc(w).lower() for w in _strings(doc.get("needs_diacritics"), "needs"))

    hazards: PatternSet[HazardCategory] = PatternSet()
    for key, spec in _mapping(doc["hazards"], "hazards").items():
        spec = _mapping(spec, f"hazards.{key}")
        cat = HazardCategory(str(key), str(spec["label"]), bool(spec.get("questions", True)))
        where = f"hazards.{key}.patterns"
        for p in _compile_all(where, _strings(spec.get("patterns"), where), gap, needs):
            hazards.add(p, cat)

    neg = _mapping(doc.get("negation") or {}, "negation")
    signals: PatternSet[Signal] = PatternSet()
    signal_list: list[Signal] = []
    for key, spec in _mapping(doc.get("signals") or {}, "signals").items():
        spec = _mapping(spec, f"signals.{key}")
        if spec.get("severity") not in SIGNAL_SEVERITIES:
            raise ValueError(f"signals.{key}.severity must be one of {SIGNAL_SEVERITIES}")
        sig = Signal(str(key), str(spec["label"]), spec["severity"], spec.get("queue"))
        signal_list.append(sig)
        where = f"signals.{key}.patterns"
        for p in _compile_all(where, _strings(spec.get("patterns"), where), gap, needs):
            signals.add(p, sig)

    idioms: PatternSet[Idiom] = PatternSet()
    for spec in doc.get("not_hazards") or []:
        spec = _mapping(spec, "not_hazards entry")
        where = f"not_hazards {spec.get('pattern')!r}"
        unless = WordSet(_strings(spec.get("unless"), f"{where}.unless"))
        requires = spec.get("requires")
        signal = spec.get("signal")
        if signal is not None and signal not in {s.key for s in signal_list}:
            raise ValueError(f"{where}: signal {signal!r} is not a key of `signals`")
        idiom = Idiom(
            str(spec["meaning"]),
            unless,
            WordSet(_strings(requires, f"{where}.requires")) if requires else None,
            signal,
        )
        idioms.add(compile_pattern(spec["pattern"], gap, needs), idiom)

    frus = _mapping(doc.get("frustration") or {"label": "frustration"}, "frustration")
    frustration: PatternSet[str] = PatternSet()
    for p in _strings(frus.get("patterns"), "frustration.patterns"):
        frustration.add(compile_pattern(p, gap, needs), "frustration")

    topics: PatternSet[str] = PatternSet()
    topic_map = _mapping(doc.get("topics") or {}, "topics")
    for queue, words in topic_map.items():
        for p in _strings(words, f"topics.{queue}"):
            topics.add(compile_pattern(p, gap, needs), str(queue))

    return Lexicon(
        path=path,
        aliases=_aliases(doc),
        hazards=hazards,
        idioms=idioms,
        negators=_by_language(neg, "words"),
        fillers=_by_language(neg, "fillers"),
        negation_window=int(neg.get("window", 3)),
        frames=tuple(_frame(f, frame_gap, needs) for f in doc.get("questions") or []),
        particles=WordSet(_strings(doc.get("particles"), "particles")),
        incident_markers=WordSet(_strings(doc.get("incident_markers"), "incident_markers")),
        signals=signals,
        frustration_label=str(frus.get("label", "frustration")),
        frustration=frustration,
        topics=topics,
        topic_order=tuple(str(q) for q in topic_map),
        signal_list=tuple(signal_list),
    )
