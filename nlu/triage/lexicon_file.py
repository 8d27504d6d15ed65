"""Building the triage lexicon from data/triage/lexicon.yml: validation with messages that
name the entry, and compilation into pattern sets, once, at startup.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from nlu.files import read_yaml
from nlu.triage.patterns import (
    GAP_MARKS,
    Pattern,
    PatternError,
    PatternSet,
    WordSet,
    compile_pattern,
)
from nlu.triage.terms import (
    SIGNAL_SEVERITIES,
    CompiledLexicon,
    Frame,
    HazardCategory,
    Idiom,
    LexiconError,
    Signal,
)
from nlu.vi.text import nfc


def load_compiled(path: Path) -> CompiledLexicon:
    """Read and compile the lexicon; raise LexiconError naming the file and entry."""
    try:
        doc = read_yaml(path)
    except FileNotFoundError as e:
        raise LexiconError(f"{path}: triage lexicon not found") from e
    except yaml.YAMLError as e:
        raise LexiconError(f"{path}: not valid YAML: {e}") from e
    try:
        return _build(path, doc)
    except (PatternError, KeyError, TypeError, ValueError) as e:
        raise LexiconError(f"{path}: {e}") from e


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise ValueError(f"{where}: expected a list of words or patterns")
    if any(isinstance(v, bool) for v in value):  # YAML reads a bare no/yes/on/off as a bool
        raise ValueError(f'{where}: quote yes/no/on/off words, e.g. "no"')
    return [str(v) for v in value]


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a mapping")
    return value


def _compile_all(
    where: str, patterns: list[str], max_gap: int, needs: frozenset[str]
) -> list[Pattern]:
    if not patterns:
        raise ValueError(f"{where}: needs at least one pattern")
    return [compile_pattern(p, max_gap, needs) for p in patterns]


def _aliases(doc: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for expansion, variants in _mapping(doc.get("aliases") or {}, "aliases").items():
        words = tuple(nfc(str(expansion)).lower().split())
        for v in _strings(variants, f"aliases.{expansion}"):
            key = nfc(v).lower()
            if key in out and out[key] != words:
                raise ValueError(f"aliases: {v!r} expands to two different words")
            out[key] = words
    return out


def _by_language(negation: Mapping[str, Any], key: str) -> dict[bool, WordSet]:
    """{is English: words} from negation.vi.<key> and negation.en.<key>."""
    out = {}
    for lang in ("vi", "en"):
        section = _mapping(negation.get(lang) or {}, f"negation.{lang}")
        out[lang == "en"] = WordSet(_strings(section.get(key), f"negation.{lang}.{key}"))
    return out


def _frame(spec: Any, gap: int, needs: frozenset[str]) -> Frame:
    spec = _mapping(spec, "questions entry")
    text = str(spec["frame"])
    if spec.get("lang") not in ("vi", "en"):
        raise ValueError(f"questions: {text!r} needs lang: vi or lang: en")
    parts = text.split()
    marks = [i for i, p in enumerate(parts) if p.upper() == "HAZARD"]
    if len(marks) != 1:
        raise ValueError(f"questions: {text!r} needs exactly one HAZARD")
    left, right = parts[: marks[0]], parts[marks[0] + 1 :]
    left_gap = gap if left and left[-1] in GAP_MARKS else 0
    left = left[:-1] if left_gap else left
    right_gap = gap if right and right[0] in GAP_MARKS else 0
    right = right[1:] if right_gap else right
    final = bool(right) and right[-1].endswith("$")
    if final:
        right[-1] = right[-1][:-1]
    if not left and not right:
        raise ValueError(f"questions: {text!r} has no words around HAZARD")
    return Frame(
        text=text,
        english=spec["lang"] == "en",
        left=compile_pattern(" ".join(left), gap, needs) if left else None,
        left_gap=left_gap,
        right=compile_pattern(" ".join(right), gap, needs) if right else None,
        right_gap=right_gap,
        final=final,
        unless=WordSet(_strings(spec.get("unless"), f"questions {text!r}.unless")),
        fear=bool(spec.get("fear", False)),
    )


def _build(path: Path, doc: Any) -> CompiledLexicon:
    doc = _mapping(doc, "top level")
    if doc.get("version") != 1:
        raise ValueError("unsupported or missing version (expected 1)")
    gap = int(doc.get("max_gap", 3))
    frame_gap = int(doc.get("frame_gap", gap))
    needs = frozenset(nfc(w).lower() for w in _strings(doc.get("needs_diacritics"), "needs"))

    hazards: PatternSet[HazardCategory] = PatternSet()
    for key, spec in _mapping(doc["hazards"], "hazards").items():
        spec = _mapping(spec, f"hazards.{key}")
        cat = HazardCategory(str(key), str(spec["label"]), bool(spec.get("questions", True)))
        where = f"hazards.{key}.patterns"
        for p in _compile_all(where, _strings(spec.get("patterns"), where), gap, needs):
            hazards.add(p, cat)

    neg = _mapping(doc.get("negation") or {}, "negation")
    signals: PatternSet[Signal] = PatternSet()
    signal_list: list[Signal] = []
    for key, spec in _mapping(doc.get("signals") or {}, "signals").items():
        spec = _mapping(spec, f"signals.{key}")
        if spec.get("severity") not in SIGNAL_SEVERITIES:
            raise ValueError(f"signals.{key}.severity must be one of {SIGNAL_SEVERITIES}")
        sig = Signal(str(key), str(spec["label"]), spec["severity"], spec.get("queue"))
        signal_list.append(sig)
        where = f"signals.{key}.patterns"
        for p in _compile_all(where, _strings(spec.get("patterns"), where), gap, needs):
            signals.add(p, sig)

    idioms: PatternSet[Idiom] = PatternSet()
    for spec in doc.get("not_hazards") or []:
        spec = _mapping(spec, "not_hazards entry")
        where = f"not_hazards {spec.get('pattern')!r}"
        unless = WordSet(_strings(spec.get("unless"), f"{where}.unless"))
        requires = spec.get("requires")
        signal = spec.get("signal")
        if signal is not None and signal not in {s.key for s in signal_list}:
            raise ValueError(f"{where}: signal {signal!r} is not a key of `signals`")
        idiom = Idiom(
            str(spec["meaning"]),
            unless,
            WordSet(_strings(requires, f"{where}.requires")) if requires else None,
            signal,
        )
        idioms.add(compile_pattern(spec["pattern"], gap, needs), idiom)

    frus = _mapping(doc.get("frustration") or {"label": "frustration"}, "frustration")
    frustration: PatternSet[str] = PatternSet()
    for p in _strings(frus.get("patterns"), "frustration.patterns"):
        frustration.add(compile_pattern(p, gap, needs), "frustration")

    topics: PatternSet[str] = PatternSet()
    topic_map = _mapping(doc.get("topics") or {}, "topics")
    for queue, words in topic_map.items():
        for p in _strings(words, f"topics.{queue}"):
            topics.add(compile_pattern(p, gap, needs), str(queue))

    return CompiledLexicon(
        path=path,
        aliases=_aliases(doc),
        hazards=hazards,
        idioms=idioms,
        negators=_by_language(neg, "words"),
        fillers=_by_language(neg, "fillers"),
        negation_window=int(neg.get("window", 3)),
        frames=tuple(_frame(f, frame_gap, needs) for f in doc.get("questions") or []),
        particles=WordSet(_strings(doc.get("particles"), "particles")),
        incident_markers=WordSet(_strings(doc.get("incident_markers"), "incident_markers")),
        signals=signals,
        frustration_label=str(frus.get("label", "frustration")),
        frustration=frustration,
        topics=topics,
        topic_order=tuple(str(q) for q in topic_map),
        signal_list=tuple(signal_list),
    )
