"""Bilingual text catalogs: the FAQ answers, the Telegram channel's lines and the survey's
wording are each a YAML section of `key: {vi: …, en: …}` with `{placeholders}` filled from
`careline.business`.

Why one reader: every catalog must refuse to start with a line missing in one language (a
customer would see a blank bubble), fall back to English for a language a key lacks, and
leave an unknown `{placeholder}` visible instead of failing a reply; written once, here.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.core.vocabulary import LANGS


class CatalogError(ValueError):
    """A catalog is incomplete; the message names the file and key."""


class _Keep(dict[str, str]):
    """format_map helper: unknown {placeholders} stay visible instead of raising."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(template: str, values: Mapping[str, str]) -> str:
    return string.Formatter().vformat(template, (), _Keep(values))


@dataclass(frozen=True)
class Catalog:
    """One section: key -> {language -> text}."""

    entries: Mapping[str, Mapping[str, str]]
    placeholders: Mapping[str, str]

    @classmethod
    def section(
        cls, value: Any, where: str, placeholders: Mapping[str, str], *,
        required: Iterable[str] = (), error: type[CatalogError] = CatalogError,
    ) -> Catalog:  # fmt: skip
        """`value` read from YAML (None: empty), checked: each `required` key in every
        language. `where` ("data/telegram.yml: texts") names it in the error."""
        entries: Mapping[str, Mapping[str, str]] = value or {}
        for key in required:
            if not complete(entries.get(key)):
                raise error(f"{where}.{key} needs vi and en")
        return cls(entries, placeholders)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def raw(self, key: str, lang: str) -> str:
        """The text as written (English when `lang` has none); KeyError for an unknown key."""
        entry = self.entries[key]
        return entry.get(lang) or entry["en"]

    def text(self, key: str, lang: str, **extra: str) -> str:
        """The text with its placeholders filled."""
        return fill(self.raw(key, lang), {**self.placeholders, **extra})


def complete(entry: Mapping[str, str] | None) -> bool:
    """Does this entry have a text in every language we answer in?"""
    return bool(entry) and all((entry or {}).get(lang) for lang in LANGS)


__all__ = ["Catalog", "CatalogError", "complete", "fill"]
