"""Public intent benchmarks (../shared/benchmarks): BANKING77, CLINC150, HINT3 v2.

Loaders return train/test splits as `Example`s with the data sets' own labels; the
out-of-scope label is normalised to `OOS` so every report reads the same. Test splits are
only ever scored, never trained or tuned on. Pure Python (both runtimes can use it).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nlu.datasets import Example

OOS = "out_of_scope"
DEFAULT_ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "benchmarks"
HINT3_BOTS = ("sofmattress", "curekart", "powerplay11")


@dataclass
class Benchmark:
    name: str
    train: list[Example]
    test: list[Example]
    val: list[Example] = field(default_factory=list)
    has_oos: bool = False


def _csv(path: Path, text_col: str, label_col: str, oos_label: str | None = None) -> list[Example]:
    out = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            text, label = (row.get(text_col) or "").strip(), (row.get(label_col) or "").strip()
            if text and label:
                out.append(Example(text, OOS if label == oos_label else label, None, str(path)))
    return out


def banking77(root: Path) -> Benchmark:
    d = root / "banking77"
    return Benchmark(
        "banking77",
        _csv(d / "train.csv", "text", "category"),
        _csv(d / "test.csv", "text", "category"),
    )


def clinc150(root: Path) -> Benchmark:
    """The 'full' variant; oos_train is trained on as one more class, as in the paper."""
    data = json.loads((root / "clinc150" / "data_full.json").read_text(encoding="utf-8"))

    def rows(*keys: str) -> list[Example]:
        return [
            Example(t, OOS if label == "oos" else label, None, f"clinc150:{k}")
            for k in keys
            for t, label in data[k]
        ]

    return Benchmark(
        "clinc150", rows("train", "oos_train"), rows("test", "oos_test"), rows("val", "oos_val"),
        has_oos=True,
    )  # fmt: skip


def hint3(root: Path, bot: str) -> Benchmark:
    d = root / "hint3" / "v2"
    return Benchmark(
        f"hint3-{bot}",
        _csv(d / "train" / f"{bot}_train.csv", "sentence", "label", "NO_NODES_DETECTED"),
        _csv(d / "test" / f"{bot}_test.csv", "sentence", "label", "NO_NODES_DETECTED"),
        has_oos=True,
    )


LOADERS: dict[str, Callable[[Path], list[Benchmark]]] = {
    "banking77": lambda r: [banking77(r)],
    "clinc150": lambda r: [clinc150(r)],
    "hint3": lambda r: [hint3(r, b) for b in HINT3_BOTS],
    **{f"hint3-{b}": (lambda r, b=b: [hint3(r, b)]) for b in HINT3_BOTS},
}


def load(name: str, root: Path | None = None) -> list[Benchmark]:
    """Benchmark data from `root`, else $CARELINE_BENCHMARKS, else ../shared/benchmarks."""
    env = os.environ.get("CARELINE_BENCHMARKS")
    root = root or (Path(env) if env else DEFAULT_ROOT)
    if name not in LOADERS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(LOADERS)}")
    if not root.is_dir():
        raise FileNotFoundError(
            f"benchmark data not found at {root} (expected ../shared/benchmarks beside the "
            "repository, or set CARELINE_BENCHMARKS)"
        )
    return LOADERS[name](root)
