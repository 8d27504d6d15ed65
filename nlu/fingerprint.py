"""Model fingerprint: a hash of everything that changes what `rasa train nlu` produces.

Models are stored as models/nlu-<fingerprint>.tar.gz, so an unchanged project never retrains
and a changed one can never serve a stale model by accident. The `careline:` section of
config.yml is excluded on purpose: a new hotline number must not cost a retrain.
Runs on both runtimes (Python 3.10 and 3.11), so standard library plus PyYAML only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from nlu.files import read_yaml

# Bump when the training recipe changes in a way the files below do not show.
RECIPE_VERSION = "rasa-3.6.21/1"
OUR_KEY = "careline"
MODEL_PREFIX = "nlu-"


def rasa_config(config_path: Path) -> dict:
    """config.yml without our own section: exactly what Rasa is given to train."""
    raw = read_yaml(config_path) or {}
    return {k: v for k, v in raw.items() if k != OUR_KEY}


SEVERITY_COMPONENT = "nlu.runtime.components.severity.SeverityClassifier"


def intent_config(config: dict) -> dict:
    """The Rasa config without the severity component: what intent benchmarks and
    cross-validation train (they score intents only; the severity model has its own folds)."""
    pipeline = [c for c in config.get("pipeline") or [] if c.get("name") != SEVERITY_COMPONENT]
    return {**config, "pipeline": pipeline}


def _files(paths: Iterable[Path], patterns: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(f for pat in patterns for f in p.rglob(pat) if f.is_file())
    return sorted(set(out))


def model_fingerprint(
    config: dict, data_paths: Iterable[Path], code_paths: Iterable[Path] = (), *, root: Path
) -> str:
    """16 hex digits over the Rasa config, the training data and our custom component code."""
    h = hashlib.sha256()
    h.update(RECIPE_VERSION.encode())
    h.update(json.dumps(config, sort_keys=True, ensure_ascii=False).encode())
    for f in _files(data_paths, ("*.yml", "*.yaml", "*.txt", "*.json", "*.jsonl")):
        h.update(str(f.relative_to(root) if f.is_relative_to(root) else f).encode())
        h.update(f.read_bytes())
    for f in _files(code_paths, ("*.py",)):
        h.update(str(f.relative_to(root) if f.is_relative_to(root) else f).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def model_name(fingerprint: str) -> str:
    return f"{MODEL_PREFIX}{fingerprint}"
