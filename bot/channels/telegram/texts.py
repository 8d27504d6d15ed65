"""The Telegram channel's own replies (data/telegram.yml), validated when loaded so a missing
line is a startup error, not a blank message to a customer."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.core.vocabulary import LANGS
from nlu.files import read_yaml

REQUIRED = ("start", "help", "lang_set", "lang_usage", "attachment", "slow_down")


class TextsError(ValueError):
    """data/telegram.yml is incomplete; the message names the key."""


@dataclass(frozen=True)
class TelegramTexts:
    texts: dict[str, dict[str, str]]
    kinds: dict[str, dict[str, str]]
    placeholders: dict[str, str]

    @classmethod
    def load(cls, path: Path, placeholders: dict[str, str]) -> TelegramTexts:
        raw: dict[str, Any] = read_yaml(path) or {}
        texts = raw.get("texts") or {}
        kinds = raw.get("kinds") or {}
        for key in REQUIRED:
            if not all((texts.get(key) or {}).get(lang) for lang in LANGS):
                raise TextsError(f"{path}: texts.{key} needs vi and en")
        if not all((kinds.get("other") or {}).get(lang) for lang in LANGS):
            raise TextsError(f"{path}: kinds.other needs vi and en")
        return cls(texts, kinds, placeholders)

    def get(self, key: str, lang: str, **extra: str) -> str:
        entry = self.texts[key]
        template = entry.get(lang) or entry["en"]
        return string.Formatter().vformat(template, (), {**self.placeholders, **extra})

    def kind(self, kind: str, lang: str) -> str:
        entry = self.kinds.get(kind) or self.kinds["other"]
        return entry.get(lang) or entry["en"]
