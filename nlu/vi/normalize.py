"""Normalising Vietnamese chat text before it is featurised: NFC, lower case, abbreviations.

Customers write "sp nay con k ad", "SP NÀY CÒN KHÔNG", or decomposed accents from some phone
keyboards; the intent model should see one spelling. This module is pure Python (standard
library only, Python 3.10) so the gateway's tests can pin its behaviour, and the Rasa
tokenizer in nlu/runtime/components calls it unchanged.

Abbreviations come from a `Lexicon` (data/lexicon/abbreviations.yml, read at training time and
stored in the model). Expansion is deliberately conservative:

* only whole words are expanded: "kk", "ok", "20k" and "v.v" never lose a letter;
* a one-letter abbreviation ("k", "r", "v", "j") is expanded only when it stands alone as a
  lower-case word (a capital "Z" in "Galaxy Z Flip" is a model name), and not right after a
  number ("500 k" is five hundred thousand, not "500 không");
* Vietnamese abbreviations are not applied to a message that reads as English ("r u a bot"),
  and English ones ("u", "pls") only to such a message.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nlu.files import read_yaml
from nlu.vi.text import has_diacritics, language_votes

SECTIONS = ("any", "vi", "en")

# A word: letters/digits, possibly joined by these characters with no space ("v.v", "wi-fi",
# "8:30", "a@b.com"). Such compounds are kept whole and never expanded.
_WORD = re.compile(r"\w+(?:[.'’\-/@&:+]\w+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_JOINED = re.compile(r"[.'’\-/@&:+]")

# Extra English cues that the language guess in nlu.vi.text does not know about.
_EN_CUES = frozenset(["u", "ur", "im", "pls", "plz", "thx", "dont", "cant", "wont"])


@dataclass(frozen=True)
class Lexicon:
    """Abbreviation tables: lower-case NFC abbreviation -> expansion, by language section.

    `any` applies to every message, `vi` to messages that do not read as English, `en` only to
    messages that do.
    """

    any: Mapping[str, str] = field(default_factory=dict)
    vi: Mapping[str, str] = field(default_factory=dict)
    en: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, doc: Mapping[str, object]) -> Lexicon:
        """Build from the YAML layout: {section: {expansion: [abbreviation, ...]}}.

        Raises ValueError on a malformed table or on one abbreviation with two expansions, so
        a typo in the data file fails training instead of silently changing the model.
        """
        tables: dict[str, dict[str, str]] = {}
        for section in SECTIONS:
            raw = doc.get(section) or {}
            if not isinstance(raw, Mapping):
                raise ValueError(f"lexicon section {section!r} must be a mapping")
            table: dict[str, str] = {}
            for expansion, variants in raw.items():
                if isinstance(variants, str):
                    variants = [variants]
                if not isinstance(expansion, str) or not isinstance(variants, list):
                    raise ValueError(f"{section}: {expansion!r} needs a list of abbreviations")
                target = _canon(expansion)
                for v in variants:
                    key = _canon(str(v))
                    if not key or not _WORD.fullmatch(key) or _JOINED.search(key):
                        raise ValueError(f"{section}: {v!r} is not a single plain word")
                    if table.get(key, target) != target:
                        raise ValueError(
                            f"{section}: {v!r} expands to both {table[key]!r} and {target!r}"
                        )
                    if key != target:
                        table[key] = target
            tables[section] = table
        unknown = set(doc) - set(SECTIONS) - {"version"}
        if unknown:
            raise ValueError(f"unknown lexicon sections: {sorted(unknown)}")
        return cls(any=tables["any"], vi=tables["vi"], en=tables["en"])

    @classmethod
    def load(cls, path: Path) -> Lexicon:
        """Read data/lexicon/abbreviations.yml (PyYAML is in both runtimes)."""
        doc = read_yaml(path) or {}
        if not isinstance(doc, Mapping):
            raise ValueError(f"{path}: expected a mapping at the top level")
        return cls.from_mapping(doc)

    def to_dict(self) -> dict[str, dict[str, str]]:
        """Flat JSON-able form (abbreviation -> expansion), as persisted inside a model."""
        return {s: dict(sorted(getattr(self, s).items())) for s in SECTIONS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, str]]) -> Lexicon:
        """Inverse of `to_dict`."""
        return cls(**{s: dict(data.get(s) or {}) for s in SECTIONS})


@dataclass(frozen=True)
class Word:
    """One word of a message: `start`/`end` index the ORIGINAL text (before NFC)."""

    surface: str  # as typed, NFC, case kept
    norm: str  # lower-cased and expanded; may hold several words ("sản phẩm")
    start: int
    end: int


def _canon(text: str) -> str:
    return _lower(unicodedata.normalize("NFC", text)).strip()


def _lower(text: str) -> str:
    """Lower-case without changing the length (offsets must survive): 'İ' stays as is."""
    lowered = text.lower()
    # Same length means every character mapped to one: the per-character result, unless a
    # Greek capital sigma took its context-dependent final form ("ς", which per-character
    # lowering never gives).
    if len(lowered) == len(text) and "Σ" not in text:
        return lowered
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def _nfc_with_offsets(text: str) -> tuple[str, list[int]]:
    """NFC of `text`, and for each composed index (plus one past the end) its original index.

    Composition happens within a base character and the combining marks after it, so each
    such cluster is composed on its own and mapped back to where it started.
    """
    if unicodedata.is_normalized("NFC", text):  # most typed text: nothing moves
        return text, list(range(len(text) + 1))
    composed: list[str] = []
    origin: list[int] = []
    start = 0
    for i in range(1, len(text) + 1):
        if i == len(text) or unicodedata.combining(text[i]) == 0:
            piece = unicodedata.normalize("NFC", text[start:i])
            composed.append(piece)
            origin.extend(min(start + k, i - 1) for k in range(len(piece)))
            start = i
    origin.append(len(text))
    out = "".join(composed)
    if out != unicodedata.normalize("NFC", text):  # composition across clusters (not Vietnamese)
        out = unicodedata.normalize("NFC", text)
        origin = [min(i, len(text)) for i in range(len(out))] + [len(text)]
    return out, origin


def _reads_english(words: list[str], text: str, lexicon: Lexicon) -> bool:
    """True when the message reads as English, so Vietnamese one-letter rules stay off."""
    if has_diacritics(text):
        return False
    vi, en = language_votes(w for w in words if len(w) > 1)
    vi += sum(len(w) > 1 and w in lexicon.vi for w in words)
    # one-letter words vote only through _EN_CUES ("u"): "r" alone is no sign of English
    en += sum((len(w) > 1 and w in lexicon.en) or w in _EN_CUES for w in words)
    return en > vi


def _expand(
    word: str, surface: str, prev: str | None, alone: bool, table: Mapping[str, str]
) -> str:
    target = table.get(word)
    if target is None:
        return word
    if len(word) == 1:
        if not alone and not surface.islower():
            return word  # "Galaxy Z Flip": a capital single letter is a name
        if prev is not None and _NUMBER.fullmatch(prev):
            return word  # "500 k", "2 r"
    return target


def normalized_words(text: str, lexicon: Lexicon) -> list[Word]:
    """Split `text` into words and normalise each; offsets point into the original `text`.

    Emoji and punctuation are not words. A message with no word at all (e.g. "??") yields no
    words; callers decide what to do with it.
    """
    composed, origin = _nfc_with_offsets(text)
    lowered = _lower(composed)
    matches = list(_WORD.finditer(lowered))
    plain = [m.group() for m in matches]
    english = _reads_english(plain, composed, lexicon)
    table = {**(lexicon.en if english else lexicon.vi), **lexicon.any}
    out: list[Word] = []
    prev: str | None = None
    for m in matches:
        word = m.group()
        surface = composed[m.start() : m.end()]
        norm = _expand(word, surface, prev, len(matches) == 1, table)
        out.append(Word(surface, norm, origin[m.start()], origin[m.end()]))
        prev = word
    return out


def normalize_text(text: str, lexicon: Lexicon) -> str:
    """The whole message normalised, punctuation, emoji and spacing kept.

    'Shop ơi, SP này còn k?' -> 'shop ơi, sản phẩm này còn không?'
    """
    composed, _ = _nfc_with_offsets(text)
    lowered = _lower(composed)
    parts: list[str] = []
    pos = 0
    for w, m in zip(normalized_words(text, lexicon), _WORD.finditer(lowered), strict=True):
        parts.append(lowered[pos : m.start()])
        parts.append(w.norm)
        pos = m.end()
    parts.append(lowered[pos:])
    return "".join(parts)


def expansions(lexicon: Lexicon) -> Iterable[tuple[str, str, str]]:
    """(section, abbreviation, expansion) rows, for checks and docs."""
    for section in SECTIONS:
        for abbr, target in sorted(getattr(lexicon, section).items()):
            yield section, abbr, target


__all__ = ["SECTIONS", "Lexicon", "Word", "expansions", "normalize_text", "normalized_words"]
