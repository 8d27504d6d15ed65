"""Reading a survey answer: a clicked button (`survey:csat:5`) or typed text ("5", "năm",
"5 sao", "rat hai long", "bỏ qua").

Pure functions over folded text (no diacritics, lower case), so Vietnamese typed with or
without accents reads the same. Phrases are matched as whole words, longest first, so
"không hài lòng" wins over "hài lòng", and a phrase from another question ("rất hài lòng"
while CES is asked) is never misread through its number-like words ("hai" = 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nlu.vi.text import fold
from surveys.texts import SurveyTexts

PAYLOAD_PREFIX = "survey:"
SKIP_PAYLOAD = "survey:skip"
SCALES: dict[str, tuple[int, int]] = {"ces": (1, 7), "csat": (1, 5), "nps": (0, 10)}
NO_COMMENT = ("khong", "ko", "k", "no", "none", "nope", "khong co", "khong co gi", "ko co",
              "nothing", "khong a", "ko a", "no thanks")  # fmt: skip
MAX_WORDS_FOR_NUMBER_WORDS = 4  # "năm sao", "cho bảy điểm"; longer text is not a bare score
_RATIO = re.compile(r"\b(\d{1,2})\s*/\s*(\d{1,2})\b")
_INT = re.compile(r"(?<![\d.,])\d{1,3}(?![\d.,]\d)")
_NON_WORD = re.compile(r"[^\w/]+")


@dataclass(frozen=True)
class Score:
    step: str
    value: int


@dataclass(frozen=True)
class Skip:
    pass


@dataclass(frozen=True)
class Comment:
    text: str


@dataclass(frozen=True)
class Unclear:
    words: int  # how long the text was: a long one is probably a new question


Answer = Score | Skip | Comment | Unclear


def is_survey_payload(payload: str | None) -> bool:
    return bool(payload) and str(payload).startswith(PAYLOAD_PREFIX)


def score_payload(step: str, value: int) -> str:
    return f"{PAYLOAD_PREFIX}{step}:{value}"


def parse_payload(payload: str) -> Answer | None:
    """A button press; None for a malformed or out-of-range payload (treated as unclear)."""
    if payload == SKIP_PAYLOAD:
        return Skip()
    parts = payload.split(":")
    if len(parts) != 3 or parts[1] not in SCALES or not parts[2].isdigit():
        return None
    lo, hi = SCALES[parts[1]]
    value = int(parts[2])
    return Score(parts[1], value) if lo <= value <= hi else None


def parse_answer(step: str, text: str, payload: str | None, texts: SurveyTexts) -> Answer:
    """What the customer meant for the question `step` (ces|csat|nps|comment)."""
    if is_survey_payload(payload):
        return parse_payload(str(payload)) or Unclear(0)
    folded = _NON_WORD.sub(" ", fold(text)).strip()
    words = folded.split()
    if step == "comment":
        if not words or folded in NO_COMMENT or _is_skip(folded, texts):
            return Skip()
        return Comment(text.strip())
    if _is_skip(folded, texts):
        return Skip()
    value = read_score(step, folded, texts)
    if value is None:
        return Unclear(len(words))
    return Score(step, value)


def read_score(step: str, folded: str, texts: SurveyTexts) -> int | None:
    lo, hi = SCALES[step]
    ratio = _RATIO.search(folded)  # "4/5", "9/10": the first number is the score
    if ratio:
        value = int(ratio.group(1))
        return value if lo <= value <= hi else None
    digits = {int(d) for d in _INT.findall(folded)}
    if digits:
        (value, *more) = digits
        return value if not more and lo <= value <= hi else None
    own = _find_phrase(folded, texts.phrases.get(step, {}))
    if own is not None:
        return own
    for other, phrases in texts.phrases.items():
        if other != step and _find_phrase(folded, phrases) is not None:
            return None  # an answer to another question: ask again rather than misread it
    words = folded.split()
    if len(words) > MAX_WORDS_FOR_NUMBER_WORDS:
        return None
    found = {texts.numbers[w] for w in words if w in texts.numbers}
    if len(found) == 1:
        value = found.pop()
        return value if lo <= value <= hi else None
    return None


def _find_phrase(folded: str, phrases: dict[str, int]) -> int | None:
    padded = f" {folded} "
    for phrase in sorted(phrases, key=len, reverse=True):
        if f" {phrase} " in padded:
            return phrases[phrase]
    return None


def _is_skip(folded: str, texts: SurveyTexts) -> bool:
    """The whole message is a way of saying 'skip' (not merely containing 'thôi')."""
    return folded in texts.skip_words or any(
        folded.startswith(w + " ") and len(folded.split()) <= len(w.split()) + 2
        for w in texts.skip_words
        if len(w.split()) > 1 or w in ("skip", "bo qua")
    )
