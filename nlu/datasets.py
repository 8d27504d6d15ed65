"""Reading intent data: Rasa 3 NLU YAML (our data/) and labelled examples in general.

Pure Python + PyYAML so both runtimes can use it: the gateway for checks and the CLI, the
NLU runtime for evaluation. The language of an example comes from its file name (vi.yml,
en.yml), which keeps the data files themselves plain Rasa YAML.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from nlu.files import read_yaml
from nlu.vi.text import has_diacritics


@dataclass(frozen=True)
class Example:
    text: str
    intent: str
    language: str | None = None  # "vi" | "en" | None (unknown)
    source: str = ""

    @property
    def slices(self) -> list[str]:
        """Evaluation slices this example belongs to (always 'all')."""
        out = ["all"]
        if self.language:
            out.append(f"lang:{self.language}")
        if self.language == "vi":
            out.append("vi:diacritics" if has_diacritics(self.text) else "vi:no-diacritics")
        return out


def _lang_from_path(path: Path) -> str | None:
    stem = path.stem.lower()
    for lang in ("vi", "en"):
        if stem == lang or stem.startswith(lang + "_") or stem.endswith("_" + lang):
            return lang
    return None


def _example_lines(block: object) -> Iterable[str]:
    if isinstance(block, str):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("- "):
                yield line[2:].strip()
    elif isinstance(block, list):  # the long form: [{text: ..., metadata: ...}]
        for item in block:
            text = item.get("text") if isinstance(item, dict) else item
            if isinstance(text, str) and text.strip():
                yield text.strip()


def load_rasa_file(path: Path) -> list[Example]:
    doc = read_yaml(path) or {}
    lang = _lang_from_path(path)
    out: list[Example] = []
    for item in doc.get("nlu") or []:
        intent = item.get("intent") if isinstance(item, dict) else None
        if not intent:
            continue  # synonyms, regexes, lookups: not labelled examples
        for text in _example_lines(item.get("examples")):
            out.append(Example(text, str(intent), lang, str(path)))
    return out


def load_rasa_nlu(path: Path) -> list[Example]:
    """All labelled examples in a Rasa NLU YAML file or a folder of them."""
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml"))
    )
    return [ex for f in files for ex in load_rasa_file(f)]


def to_rasa_yaml(examples: Iterable[Example]) -> str:
    """Render examples as Rasa 3 NLU YAML (used to hand benchmark splits to `rasa train`)."""
    by_intent: dict = {}
    for ex in examples:
        by_intent.setdefault(ex.intent, []).append(ex.text)
    doc = {
        "version": "3.1",
        "nlu": [
            {"intent": intent, "examples": "".join(f"- {_one_line(t)}\n" for t in texts)}
            for intent, texts in by_intent.items()
        ],
    }
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=10_000)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def stratified_folds(examples: Iterable[Example], k: int, seed: int = 7) -> list[list[Example]]:
    """`k` folds with each intent's examples dealt round-robin after a seeded shuffle, so
    every intent is in every fold in proportion (deterministic for a given seed)."""
    by_intent: dict[str, list[Example]] = {}
    for e in examples:
        by_intent.setdefault(e.intent, []).append(e)
    folds: list[list[Example]] = [[] for _ in range(k)]
    for intent in sorted(by_intent):
        exs = list(by_intent[intent])
        random.Random(f"{seed}:{intent}").shuffle(exs)
        for i, e in enumerate(exs):
            folds[i % k].append(e)
    return folds
