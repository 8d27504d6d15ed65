"""Bot content from data/: FAQ answers (responses.yml) and the intent catalog (intents.yml).

Loaded once at startup and validated, so a missing answer is a startup error rather than a
customer seeing a blank bubble.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.core.catalog import Catalog, CatalogError, complete
from nlu.files import read_yaml

SYSTEM_REQUIRED = ("fallback", "clarify", "escalated", "nlu_unavailable", "safety")


class ContentError(CatalogError):
    """data/ content is inconsistent; the message says which file and key."""


@dataclass(frozen=True)
class IntentInfo:
    name: str
    action: str  # answer | escalate
    titles: dict[str, str]

    def title(self, lang: str) -> str:
        return self.titles.get(lang) or self.titles["en"]


class Content:
    def __init__(self, answers: Catalog, system: Catalog, intents: dict[str, IntentInfo]) -> None:
        self._answers = answers  # intent -> {language -> answer}
        self._system = system  # the bot's own lines (fallback, clarify, safety, …)
        self.intents = intents

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
            if not complete(spec.get("title")):
                raise ContentError(f"{intents_path}: intents.{name}.title needs vi and en")
            intents[name] = IntentInfo(name, spec["action"], dict(spec["title"]))
        for name, info in intents.items():
            if info.action == "answer" and not complete(responses.get(name)):
                raise ContentError(f"{responses_path}: no vi/en answer for intent '{name}'")
        system = Catalog.section(
            responses.get("_system"), f"{responses_path}: _system", placeholders,
            required=SYSTEM_REQUIRED, error=ContentError,
        )  # fmt: skip
        answers = {k: v for k, v in responses.items() if k != "_system"}
        return cls(Catalog(answers, placeholders), system, intents)

    def answer(self, intent: str, lang: str) -> str | None:
        entry = self._answers.entries.get(intent) or {}
        return self._answers.text(intent, lang) if entry.get(lang) or entry.get("en") else None

    def system(self, key: str, lang: str, **extra: str) -> str:
        return self._system.text(key, lang, **extra)

    def title(self, intent: str, lang: str) -> str:
        info = self.intents.get(intent)
        return info.title(lang) if info else intent.replace("_", " ")
