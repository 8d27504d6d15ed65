"""Diacritics, Unicode normalisation and a light vi/en language guess.

Vietnamese is typed three ways: precomposed (NFC), decomposed (NFD, some phone keyboards),
and without any diacritics at all (fast chat). Everything that compares Vietnamese text goes
through these helpers so the three forms meet. Python 3.10 compatible (NLU runtime uses it).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from typing import overload

_VI_SPECIAL = str.maketrans({"đ": "d", "Đ": "D"})  # not a combining mark: NFD keeps it whole
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)

# Frequent Vietnamese chat words as typed without diacritics, and English function words.
_VI_ASCII = frozenset(
    [
        "ko",
        "k",
        "khong",
        "hok",
        "hong",
        "dc",
        "duoc",
        "j",
        "gi",
        "sp",
        "shop",
        "oi",
        "ad",
        "a",
        "ak",
        "nhe",
        "nha",
        "roi",
        "r",
        "ve",
        "cho",
        "toi",
        "minh",
        "mik",
        "mk",
        "bn",
        "bao",
        "nhieu",
        "ntn",
        "sao",
        "the",
        "nao",
        "lam",
        "may",
        "dien",
        "thoai",
        "dt",
        "pin",
        "sac",
        "bi",
        "hu",
        "loi",
        "hang",
        "don",
        "giao",
        "ship",
        "tra",
        "gop",
        "bao",
        "hanh",
        "doi",
        "tra",
        "cua",
        "hang",
        "chi",
        "nhanh",
        "mo",
        "cua",
        "dong",
        "mua",
        "ban",
        "gia",
        "khuyen",
        "mai",
        "hoa",
        "don",
        "em",
        "anh",
        "chi",
        "ban",
        "xin",
        "chao",
        "cam",
        "on",
        "ok",
        "oke",
        "vay",
        "z",
        "v",
        "luon",
        "nua",
        "voi",
        "cai",
        "nay",
        "kia",
        "duoc",
        "chua",
    ]
)
_EN = frozenset(
    [
        "the",
        "a",
        "an",
        "is",
        "are",
        "was",
        "were",
        "my",
        "i",
        "you",
        "your",
        "it",
        "this",
        "that",
        "to",
        "of",
        "for",
        "on",
        "in",
        "with",
        "and",
        "or",
        "not",
        "can",
        "how",
        "what",
        "when",
        "where",
        "why",
        "do",
        "does",
        "did",
        "have",
        "has",
        "please",
        "help",
        "hello",
        "hi",
        "thanks",
        "thank",
        "phone",
        "laptop",
        "order",
        "battery",
        "screen",
        "warranty",
        "store",
        "price",
        "refund",
    ]
)


def nfc(text: str) -> str:
    """Canonical composed form: NFD input from some keyboards must equal NFC input."""
    return unicodedata.normalize("NFC", text)


def strip_diacritics(text: str) -> str:
    """'Máy bị nổ, Đà Nẵng' -> 'May bi no, Da Nang' (case kept)."""
    decomposed = unicodedata.normalize("NFD", text.translate(_VI_SPECIAL))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", stripped)


def has_diacritics(text: str) -> bool:
    """True when the text carries any Vietnamese diacritic (or đ/Đ)."""
    if text.isascii():  # unaccented chat, English: no need to decompose anything
        return False
    return strip_diacritics(text) != nfc(text)


@overload
def detect_language(text: str, default: str) -> str: ...
@overload
def detect_language(text: str, default: None = None) -> str | None: ...
def detect_language(text: str, default: str | None = None) -> str | None:
    """'vi', 'en', or `default` when the text gives no evidence (e.g. '??', 'ok').

    Diacritics are decisive; otherwise count known chat words of each language.
    """
    if has_diacritics(text):
        return "vi"
    words = [w.lower() for w in _WORD.findall(text)]
    vi = sum(w in _VI_ASCII for w in words)
    en = sum(w in _EN for w in words)
    if vi > en:
        return "vi"
    if en > vi:
        return "en"
    return default


def fold(text: str) -> str:
    """Diacritic- and case-insensitive key: 'Máy BỊ nổ' and 'may bi no' both give 'may bi no'.

    Used for features that must match Vietnamese typed with or without diacritics.
    """
    if len(text) <= _FOLD_CACHE_CHARS:
        return _fold_word(text)
    return strip_diacritics(nfc(text)).lower()


# Featurizers fold every token of every message, and chat reuses a small vocabulary: the fold
# of short strings is remembered (bounded: at most this many entries of at most this length).
_FOLD_CACHE_CHARS = 32


@lru_cache(maxsize=65536)
def _fold_word(text: str) -> str:
    return strip_diacritics(nfc(text)).lower()


def language_votes(words: Iterable[str]) -> tuple[int, int]:
    """(vi, en): how many of the lower-cased `words` are known chat words of each language.

    The raw counts behind `detect_language`, for callers that weigh extra evidence.
    """
    vi = en = 0
    for w in words:
        vi += w in _VI_ASCII
        en += w in _EN
    return vi, en
