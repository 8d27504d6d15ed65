"""The Telegram channel's own replies (data/telegram.yml), validated when loaded so a missing
line is a startup error, not a blank message to a customer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.core.catalog import Catalog, CatalogError
from nlu.files import read_yaml

REQUIRED = ("start", "help", "lang_set", "lang_usage", "attachment", "slow_down")


class TextsError(CatalogError):
    """data/telegram.yml is incomplete; the message names the key."""


@dataclass(frozen=True)
class TelegramTexts:
    texts: Catalog
    kinds: Catalog  # what an attachment is called, never with placeholders

    @classmethod
    def load(cls, path: Path, placeholders: dict[str, str]) -> TelegramTexts:
        raw: dict[str, Any] = read_yaml(path) or {}
        return cls(
            Catalog.section(raw.get("texts"), f"{path}: texts", placeholders,
                            required=REQUIRED, error=TextsError),
            Catalog.section(raw.get("kinds"), f"{path}: kinds", {},
                            required=("other",), error=TextsError),
        )  # fmt: skip

    def get(self, key: str, lang: str, **extra: str) -> str:
        return self.texts.text(key, lang, **extra)

    def kind(self, kind: str, lang: str) -> str:
        return self.kinds.raw(kind if kind in self.kinds else "other", lang)
