"""Where a parse spends its time: per pipeline node at a given batch size, and what a full
garbage collection costs in a process that has loaded the model.

Runs in the NLU runtime (it imports rasa), from the repository root:

    .venv-nlu/bin/python bench/nlu_profile.py                # the newest models/nlu-*.tar.gz
    .venv-nlu/bin/python bench/nlu_profile.py --batch 32 --model models/nlu-....tar.gz

Why it exists: docs/BENCHMARKS.md quotes per-node costs and the full-collection pause that
`gc.freeze()` in the NLU service removes; this prints them. Texts are data/nlu's, shuffled.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, help="default: the newest models/nlu-*.tar.gz")
    p.add_argument("--batch", type=int, default=64, help="texts per parse_many call")
    p.add_argument("--repeat", type=int, default=3, help="passes over the texts")
    args = p.parse_args(argv)
    models = sorted((ROOT / "models").glob("nlu-*.tar.gz"), key=lambda m: m.stat().st_mtime)
    model_path = args.model or (models[-1] if models else None)
    if model_path is None or not model_path.is_file():
        print("error: no model; run `careline train` first or pass --model", file=sys.stderr)
        return 2

    from rasa.core.channels.channel import UserMessage
    from rasa.engine.constants import PLACEHOLDER_MESSAGE, PLACEHOLDER_TRACKER
    from rasa.shared.core.trackers import DialogueStateTracker

    from nlu.datasets import load_rasa_nlu
    from nlu.runtime.model import NLUModel

    model = NLUModel.load(model_path)
    tracked = len(gc.get_objects())
    started = time.perf_counter()
    gc.collect()
    full_gc_ms = (time.perf_counter() - started) * 1000
    gc.freeze()  # as the service does, so collections do not blur the node timings

    texts = sorted({e.text for e in load_rasa_nlu(ROOT / "data" / "nlu")})
    random.Random(1).shuffle(texts)
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    plan = model._plan
    spent: dict[str, float] = {}
    n = 0
    for _ in range(args.repeat):
        for batch in batches:
            values = {
                PLACEHOLDER_MESSAGE: (PLACEHOLDER_MESSAGE, [UserMessage(t) for t in batch]),
                PLACEHOLDER_TRACKER: (PLACEHOLDER_TRACKER, DialogueStateTracker.from_events(
                    "profile", [])),
            }  # fmt: skip
            for name, node, needs in plan.nodes:
                t = time.perf_counter()
                values[name] = node(*(values[k] for k in needs))
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
            n += len(batch)
    print(f"model {model_path.name}; {n} parses in batches of {args.batch}; "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"full GC over {tracked:,} tracked objects: {full_gc_ms:.1f} ms")
    print("| node | µs per message |\n|---|---:|")
    for name, seconds in spent.items():
        print(f"| {name} | {seconds / n * 1e6:.1f} |")
    print(f"| **all nodes** | **{sum(spent.values()) / n * 1e6:.1f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
