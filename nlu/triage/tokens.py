"""Words of a customer message, in the form the triage patterns compare against.

Vietnamese arrives with diacritics, without them, or half and half, plus chat abbreviations
("dt", "ko"). Each word therefore keeps both its typed form and its folded form, and knows
whether it carried diacritics: "nổ" (explode) typed with its accent must not match "nó" (it),
but "no" typed without any accent may be either. Punctuation splits a message into clauses so
that a pattern with a gap never reaches across ", " or "?" into the next thought.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nlu.vi.text import has_diacritics, nfc, strip_diacritics

# A word, with an in-word apostrophe kept ("didn't", "there's"); the apostrophe is dropped.
_WORD = re.compile(r"\w+(?:['’]\w+)*", re.UNICODE)
_CLAUSE_BREAK = re.compile(r"[.,;:!?…()\[\]\n\"“”]|\s-\s")
_APOSTROPHES = str.maketrans("", "", "'’")
_NUMBER_JOINS = frozenset(".,:/")  # "12.12", "1,200,000", "8:30": one clause


@dataclass(frozen=True, slots=True)
class Token:
    """One word: `raw` as typed (NFC, lower case), `folded` without diacritics.

    `start`/`end` are character offsets in the NFC text, so a reason can quote the customer's
    own words. Words expanded from one abbreviation share its offsets.
    """

    raw: str
    folded: str
    accented: bool
    clause: int
    start: int
    end: int


def _word(raw: str, clause: int, start: int, end: int) -> Token:
    return Token(raw, strip_diacritics(raw), has_diacritics(raw), clause, start, end)


def tokenize(text: str, aliases: Mapping[str, Sequence[str]] | None = None) -> list[Token]:
    """Split `text` into lower-case words, expanding chat abbreviations from `aliases`.

    An abbreviation right after a number is left alone: "500 k" is money, not "không".
    """
    text = nfc(text)
    aliases = aliases or {}
    tokens: list[Token] = []
    clause, last_end = 0, 0
    for m in _WORD.finditer(text):
        between = text[last_end : m.start()]
        in_number = between in _NUMBER_JOINS and tokens and tokens[-1].raw[-1:].isdigit()
        if _CLAUSE_BREAK.search(between) and not (in_number and m.group()[0].isdigit()):
            clause += 1
        last_end = m.end()
        raw = m.group().lower().translate(_APOSTROPHES)
        expansion = aliases.get(raw)
        if expansion and not (tokens and tokens[-1].raw.isdigit()):
            tokens.extend(_word(w, clause, m.start(), m.end()) for w in expansion)
        else:
            tokens.append(_word(raw, clause, m.start(), m.end()))
    return tokens


def quote(text: str, tokens: Sequence[Token], start: int, end: int) -> str:
    """The customer's own words for tokens[start:end] (as typed, case kept)."""
    return nfc(text)[tokens[start].start : tokens[end - 1].end]
