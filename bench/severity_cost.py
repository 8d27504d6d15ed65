"""What the severity component adds to a parse: time per message in a batch of 64.

    .venv-nlu/bin/python bench/severity_cost.py [--rounds 50]

Fits the model on the training corpus exactly as the pipeline component does, then times
`predict` (features + both heads) on batches of 64 real corpus messages, beside the cost of
a whole batch through the project NLU model when one is trained (models/). Prints the figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nlu.runtime.severity_model import SeverityModel, read_corpus  # noqa: E402
from nlu.vi.normalize import Lexicon  # noqa: E402


def _time(fn, rounds: int) -> float:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    rows = read_corpus([ROOT / "data/triage/corpus/train", ROOT / "data/triage/labelled.jsonl"])
    lexicon = Lexicon.load(ROOT / "data/lexicon/abbreviations.yml")
    started = time.perf_counter()
    model = SeverityModel.fit([r.example() for r in rows], lexicon)
    print(f"fit on {len(rows)} messages: {time.perf_counter() - started:.1f} s")
    texts = [r.window for r in rows[: args.batch]]
    model.predict(texts)  # warm
    sev = _time(lambda: model.predict(texts), args.rounds)
    print(f"severity component, batch of {args.batch}: {sev * 1000:.2f} ms "
          f"({sev / args.batch * 1000:.3f} ms per message)")  # fmt: skip
    models = sorted((ROOT / "models").glob("nlu-*.tar.gz"), key=lambda m: m.stat().st_mtime)
    if models:
        from nlu.runtime.model import NLUModel

        nlu = NLUModel.load(models[-1])
        plain = [r.text for r in rows[: args.batch]]
        nlu.parse_many(plain)
        whole = _time(lambda: nlu.parse_many(plain), max(5, args.rounds // 5))
        print(f"whole parse ({models[-1].name}), batch of {args.batch}: {whole * 1000:.1f} ms "
              f"({whole / args.batch * 1000:.3f} ms per message); severity share "
              f"{sev / whole:.0%}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
