"""Bot content from data/: FAQ answers (responses.yml) and the intent catalog (intents.yml).

Loaded once at startup and validated, so a missing answer is a startup error rather than a
customer seeing a blank bubble.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.core.vocabulary import LANGS
from nlu.files import read_yaml


class ContentError(ValueError):
    """data/ content is inconsistent; the message says which file and key."""


class _Keep(dict[str, str]):
    """format_map helper: unknown {placeholders} stay visible instead of raising."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True)
class IntentInfo:
    name: str
    action: str  # answer | escalate
    titles: dict[str, str]

    def title(self, lang: str) -> str:
        return self.titles.get(lang) or self.titles["en"]


class Content:
    def __init__(self, responses: dict[str, Any], intents: dict[str, IntentInfo],
                 placeholders: dict[str, str]) -> None:  # fmt: skip
        self._responses = responses
        self.intents = intents
        self._placeholders = placeholders

    @classmethod
    def load(
        cls, responses_path: Path, intents_path: Path, placeholders: dict[str, str]
    ) -> Content:
        responses = (read_yaml(responses_path) or {}).get("responses") or {}
        raw = (read_yaml(intents_path) or {}).get("intents") or {}
        intents = {}
        for name, spec in raw.items():
            if spec.get("action") not in ("answer", "escalate"):
                raise ContentError(f"{intents_path}: intents.{name}.action must be answer|escalate")
            if not all(spec.get("title", {}).get(lang) for lang in LANGS):
                raise ContentError(f"{intents_path}: intents.{name}.title needs vi and en")
            intents[name] = IntentInfo(name, spec["action"], dict(spec["title"]))
        for name, info in intents.items():
            if info.action == "answer" and not all(
                (responses.get(name) or {}).get(lang) for lang in LANGS
            ):
                raise ContentError(f"{responses_path}: no vi/en answer for intent '{name}'")
        for key in ("fallback", "clarify", "escalated", "nlu_unavailable", "safety"):
            if not all(
                ((responses.get("_system") or {}).get(key) or {}).get(lang) for lang in LANGS
            ):
                raise ContentError(f"{responses_path}: _system.{key} needs vi and en")
        return cls(responses, intents, placeholders)

    def _fill(self, text: str, extra: dict[str, str]) -> str:
        return string.Formatter().vformat(text, (), _Keep({**self._placeholders, **extra}))

    def answer(self, intent: str, lang: str) -> str | None:
        entry = self._responses.get(intent) or {}
        text = entry.get(lang) or entry.get("en")
        return self._fill(text, {}) if text else None

    def system(self, key: str, lang: str, **extra: str) -> str:
        entry = self._responses["_system"][key]
        return self._fill(entry.get(lang) or entry["en"], extra)

    def title(self, intent: str, lang: str) -> str:
        info = self.intents.get(intent)
        return info.title(lang) if info else intent.replace("_", " ")
