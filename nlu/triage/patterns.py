"""A tiny word-pattern language for the triage lexicon (data/triage/lexicon.yml).

Why not regular expressions: every pattern must match Vietnamese typed with or without
diacritics, word by word, and the lexicon is edited by support staff. So a pattern is a
sequence of words written once, with diacritics:

    pin bị? phồng        "bị?" is optional: "pin phồng", "pin bị phồng", "pin bi phong"
    sạc|cáp … chảy       "a|b" alternatives; "…" (or "...") skips 0..max_gap words
                         of the same clause
    mất (dữ liệu|ảnh)    "(…|…)" alternatives of several words; "(…)?" optional
    =bỏng da             "=": only as typed with diacritics ("bong da" is "bóng đá")

A pattern word written with diacritics matches the same word typed with them, or typed with
none at all; a word written without diacritics (English) matches only itself. A pattern of a
single word listed in `needs_diacritics` ("nổ", "cháy", "khói") matches only when the
customer typed the diacritics, because its bare form ("no", "chay", "khoi") is a different,
everyday word; bare typing is covered by multi-word patterns such as "bị nổ", "bốc khói".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from nlu.triage.tokens import Token
from nlu.vi.text import has_diacritics, nfc, strip_diacritics

T = TypeVar("T")
GAP_MARKS = ("…", "...")
_APOSTROPHES = str.maketrans("", "", "'’")  # "won't" is the word "wont", as in tokens.py


class PatternError(ValueError):
    """A malformed pattern in the lexicon, named so the author can fix it."""


@dataclass(frozen=True, slots=True)
class Word:
    raw: str
    folded: str
    accented: bool
    exact: bool = False  # "=word": its bare spelling is another word

    @classmethod
    def parse(cls, text: str) -> Word:
        exact = text.startswith("=")
        raw = nfc(text.removeprefix("=")).lower()
        return cls(raw, strip_diacritics(raw), has_diacritics(raw), exact)

    def matches(self, token: Token, strict: bool = False) -> bool:
        """Same word as typed, or the bare spelling of an accented pattern word."""
        if token.raw == self.raw:
            return True
        if strict or self.exact or not self.accented or token.accented:
            return False
        return token.folded == self.folded


@dataclass(frozen=True, slots=True)
class Slot:
    """One place in a pattern: alternatives, each a run of one or more words."""

    options: tuple[tuple[Word, ...], ...]
    optional: bool = False

    def match(self, tokens: Sequence[Token], i: int, clause: int, strict: bool) -> Iterator[int]:
        """End index of each option that matches at tokens[i]."""
        for words in self.options:
            j = i + len(words)
            if j > len(tokens) or tokens[j - 1].clause != clause:
                continue
            if all(w.matches(t, strict) for w, t in zip(words, tokens[i:j], strict=True)):
                yield j


@dataclass(frozen=True, slots=True)
class Gap:
    """Up to `size` words of the same clause."""

    size: int


Element = Slot | Gap


@dataclass(frozen=True, slots=True)
class Pattern:
    text: str
    elements: tuple[Element, ...]
    strict: bool  # single word that needs its diacritics

    @property
    def english(self) -> bool:
        """No word carries diacritics: an English pattern (Vietnamese ones are written with)."""
        slots = [el for el in self.elements if isinstance(el, Slot)]
        return not any(w.accented for el in slots for option in el.options for w in option)

    def first_words(self) -> tuple[Word, ...]:
        first = self.elements[0]
        assert isinstance(first, Slot)
        return tuple(words[0] for words in first.options)

    def match_at(self, tokens: Sequence[Token], i: int, strict: bool = False) -> int | None:
        """End index (exclusive) of a match starting at tokens[i], else None.

        Optional words are taken when present, gaps are as short as possible. `strict`: the
        whole message reads as English, so no bare word stands for an accented one.
        """
        return _match(self, tokens, i, 0, tokens[i].clause, strict or self.strict)


def _match(
    p: Pattern, tokens: Sequence[Token], i: int, k: int, clause: int, strict: bool
) -> int | None:
    if k == len(p.elements):
        return i
    el = p.elements[k]
    if isinstance(el, Gap):
        for skip in range(el.size + 1):
            j = i + skip
            if j > len(tokens) or (skip and tokens[j - 1].clause != clause):
                break
            end = _match(p, tokens, j, k + 1, clause, strict)
            if end is not None:
                return end
        return None
    if i < len(tokens) and tokens[i].clause == clause:
        for j in el.match(tokens, i, clause, strict):
            end = _match(p, tokens, j, k + 1, clause, strict)
            if end is not None:
                return end
    return _match(p, tokens, i, k + 1, clause, strict) if el.optional else None


_PART = re.compile(r"\([^()]*\)\??|[^\s()]+|[()]")


def compile_pattern(text: str, max_gap: int, needs_diacritics: frozenset[str]) -> Pattern:
    """Parse one pattern string; raise PatternError saying what is wrong with it."""
    elements: list[Element] = []
    for part in _PART.findall(nfc(str(text)).lower().translate(_APOSTROPHES)):
        if part in GAP_MARKS:
            elements.append(Gap(max_gap))
            continue
        if part in ("(", ")"):
            raise PatternError(f"pattern {text!r}: unbalanced or nested parentheses")
        optional = part.endswith("?")
        body = part.rstrip("?")
        grouped = body.startswith("(")
        alternatives = [a.split() for a in body.strip("()").split("|")]
        if any(not a for a in alternatives):
            raise PatternError(f"pattern {text!r}: empty alternative in {part!r}")
        if not grouped and any(len(a) != 1 for a in alternatives):
            raise PatternError(f"pattern {text!r}: {part!r} is not a plain word")
        options = tuple(tuple(Word.parse(w) for w in a) for a in alternatives)
        words = [w for option in options for w in option]
        if any(not w.raw.replace("_", "").isalnum() for w in words):
            raise PatternError(f"pattern {text!r}: {part!r} is not made of plain words")
        elements.append(Slot(options, optional))
    if not elements:
        raise PatternError(f"pattern {text!r} is empty")
    if isinstance(elements[0], Gap) or isinstance(elements[-1], Gap):
        raise PatternError(f"pattern {text!r} must not start or end with a gap")
    first = elements[0]
    if isinstance(first, Slot) and first.optional:
        raise PatternError(f"pattern {text!r}: the first word cannot be optional")
    slots = [e for e in elements if isinstance(e, Slot)]
    strict = len(slots) == 1 and all(
        len(o) == 1 and o[0].raw in needs_diacritics for o in slots[0].options
    )
    return Pattern(str(text), tuple(elements), strict)


@dataclass(frozen=True, slots=True)
class Hit(Generic[T]):
    """A pattern found at tokens[start:end], with what the lexicon attached to it."""

    pattern: Pattern
    start: int
    end: int
    value: T

    def within(self, start: int, end: int) -> bool:
        return start <= self.start and self.end <= end


class PatternSet(Generic[T]):
    """Patterns indexed by the folded form of their first word: one dict lookup per token."""

    def __init__(self, entries: Iterable[tuple[Pattern, T]] = ()) -> None:
        self._index: dict[str, list[tuple[Pattern, T]]] = {}
        self.size = 0
        for pattern, value in entries:
            self.add(pattern, value)

    def add(self, pattern: Pattern, value: T) -> None:
        for folded in {w.folded for w in pattern.first_words()}:
            self._index.setdefault(folded, []).append((pattern, value))
        self.size += 1

    def find(self, tokens: Sequence[Token], strict: bool = False) -> Iterator[Hit[T]]:
        """Every pattern occurrence (one match per pattern and start word)."""
        for i, tok in enumerate(tokens):
            for pattern, value in self._index.get(tok.folded, ()):
                end = pattern.match_at(tokens, i, strict)
                if end is not None:
                    yield Hit(pattern, i, end, value)


class WordSet:
    """Single words (negators, particles, ...) matched like pattern words."""

    def __init__(self, words: Iterable[str]) -> None:
        self._index: dict[str, list[Word]] = {}
        for text in words:
            w = Word.parse(str(text))
            self._index.setdefault(w.folded, []).append(w)

    def __contains__(self, token: object) -> bool:
        if not isinstance(token, Token):
            return False
        return any(w.matches(token) for w in self._index.get(token.folded, ()))
