"""Out-of-sample severity scores for the triage corpus: leave-one-writer-out and blind.

    python -m nlu.runtime.severity_folds --train DIR_OR_FILE... --blind DIR... [--model M]

Prints one JSON line per corpus row: the row, the fold it was scored in, and the model's
verdict from a model that never saw that row's writer:
  * `lowo:<writer>` rows of the training writers, each scored by a model trained on all the
    other training writers (what the model does on phrasing it has not seen);
  * `blind` rows of the blind writers, scored by a model trained on every training writer
    (the blind writers' text is in no training fold).
With `--model`, each row also gets the project NLU model's intent for its text, so the gateway
side can triage it exactly as a live message. The gateway's `careline triage --corpus` runs
this and does the triage and the scoring; thresholds are chosen on the `lowo` rows only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nlu.runtime.severity_model import Row, SeverityModel, read_corpus, window_text
from nlu.vi.normalize import Lexicon


def _emit(row: Row, fold: str, verdict: dict, earlier: list[dict], intent: dict | None) -> None:
    out = {
        "text": row.text,
        "history": list(row.history),
        "severity": row.severity,
        "queue": row.queue,
        "style": row.style,
        "writer": row.writer,
        "kind": row.kind,
        "fold": fold,
        "model": verdict,
        "history_model": earlier,  # the verdict after each earlier message, as it arrived
    }
    if intent is not None:
        out["intent"] = intent.get("name")
        out["confidence"] = intent.get("confidence") or 0.0
    print(json.dumps(out, ensure_ascii=False))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="severity_folds", description=__doc__.split("\n")[0])
    p.add_argument("--train", type=Path, nargs="+", required=True)
    p.add_argument("--blind", type=Path, nargs="*", default=[])
    p.add_argument("--abbreviations", type=Path, default=Path("data/lexicon/abbreviations.yml"))
    p.add_argument("--model", type=Path, help="project NLU model: adds each text's intent")
    p.add_argument("--C", type=float, default=8.0)
    p.add_argument("--no-lowo", action="store_true", help="blind scores only")
    args = p.parse_args(argv)

    lexicon = Lexicon.load(args.abbreviations)
    train = read_corpus(args.train)
    blind = read_corpus(args.blind) if args.blind else []
    overlap = {r.writer for r in train} & {r.writer for r in blind}
    if overlap:
        print(f"error: writers {sorted(overlap)} are in both splits", file=sys.stderr)
        return 2
    intents: dict[str, dict] = {}
    if args.model:
        from nlu.runtime.model import NLUModel

        nlu = NLUModel.load(args.model)
        texts = sorted(
            {r.text for r in [*train, *blind]} | {h for r in [*train, *blind] for h in r.history}
        )
        for i in range(0, len(texts), 64):
            chunk = texts[i : i + 64]
            for t, parsed in zip(chunk, nlu.parse_many(chunk), strict=True):
                intents[t] = parsed.get("intent") or {}

    def score(model: SeverityModel, rows: list[Row], fold: str) -> None:
        verdicts = model.predict([r.window for r in rows])
        for row, verdict in zip(rows, verdicts, strict=True):
            prefixes = [window_text(h, row.history[:j]) for j, h in enumerate(row.history)]
            earlier = [v.as_dict() for v in model.predict(prefixes)]
            _emit(
                row, fold, verdict.as_dict(), earlier, intents.get(row.text) if args.model else None
            )

    writers = sorted({r.writer for r in train})
    if not args.no_lowo:
        for w in writers:
            rest = [r for r in train if r.writer != w]
            mine = [r for r in train if r.writer == w]
            print(f"fold lowo:{w}: train {len(rest)}, score {len(mine)}", file=sys.stderr)
            score(
                SeverityModel.fit([r.example() for r in rest], lexicon, c=args.C), mine, f"lowo:{w}"
            )
    if blind:
        print(f"blind: train {len(train)}, score {len(blind)}", file=sys.stderr)
        score(SeverityModel.fit([r.example() for r in train], lexicon, c=args.C), blind, "blind")
    return 0


if __name__ == "__main__":
    sys.exit(main())
