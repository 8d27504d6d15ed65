"""Survey wording and answer vocabulary from data/surveys.yml, loaded once at startup.

Kept in a data file, like the FAQ answers, so wording changes need no code change; validated
on load so a missing translation is a startup error, not a blank question.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.core.catalog import Catalog, CatalogError
from nlu.files import read_yaml
from nlu.vi.text import fold

QUESTIONS = ("ces", "csat", "nps", "comment")
REPLIES = ("thanks", "skipped", "expired", "already", "retry_ces", "retry_csat", "retry_nps")


class SurveyTextError(CatalogError):
    """data/surveys.yml is incomplete; the message names the key."""


@dataclass(frozen=True)
class SurveyTexts:
    questions: Catalog
    labels: dict[str, Any]
    replies: Catalog
    skip_words: tuple[str, ...]  # folded
    numbers: dict[str, int]  # folded number word -> value
    phrases: dict[str, dict[str, int]]  # question -> folded phrase -> value
    placeholders: dict[str, str]

    @classmethod
    def load(cls, path: Path, placeholders: dict[str, str]) -> SurveyTexts:
        raw = read_yaml(path) or {}
        questions = Catalog.section(
            raw.get("questions"), f"{path}: questions", placeholders, required=QUESTIONS,
            error=SurveyTextError,
        )  # fmt: skip
        replies = Catalog.section(
            raw.get("replies"), f"{path}: replies", placeholders, required=REPLIES,
            error=SurveyTextError,
        )  # fmt: skip
        answers = raw.get("answers") or {}
        return cls(
            questions=questions,
            labels=raw.get("labels") or {},
            replies=replies,
            skip_words=tuple(fold(w) for w in answers.get("skip") or ()),
            numbers={fold(k): int(v) for k, v in (answers.get("numbers") or {}).items()},
            phrases={
                q: {fold(k): int(v) for k, v in (answers.get(q) or {}).items()}
                for q in ("ces", "csat")
            },
            placeholders=placeholders,
        )

    def question(self, step: str, lang: str) -> str:
        return self.questions.text(step, lang)

    def reply(self, key: str, lang: str) -> str:
        return self.replies.text(key, lang)

    def skip_label(self, lang: str) -> str:
        entry = self.labels.get("skip") or {}
        return str(entry.get(lang) or entry.get("en") or "Skip")

    def score_label(self, step: str, value: int, lang: str) -> str:
        entry = (self.labels.get(step) or {}).get(str(value)) or {}
        return str(entry.get(lang) or entry.get("en") or value)
