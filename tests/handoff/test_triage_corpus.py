"""The triage corpus is what the issue asks of it: several independent writers, every
severity × queue cell in every style, the special kinds, and a blind split whose writers
are in no training file. Plain JSON reading: the gateway side needs no NLU runtime for it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "data" / "triage" / "corpus"
STYLES = ("vi", "vi_plain", "vi_teencode", "en")
CELLS = {
    ("critical", "safety"),
    *(("high", q) for q in ("technical", "billing", "orders", "general")),
    *(("normal", q) for q in ("technical", "billing", "orders", "safety")),
    *(("low", q) for q in ("technical", "billing", "orders", "general")),
}


def _rows(split: str) -> list[dict]:
    out = []
    for f in sorted((CORPUS / split).glob("*.jsonl")):
        out += [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line]
    return out


def test_size_writers_and_the_blind_split() -> None:
    train, blind = _rows("train"), _rows("blind")
    assert len(train) + len(blind) >= 3000
    assert all(r.get("writer") for r in train + blind)
    train_writers, blind_writers = {r["writer"] for r in train}, {r["writer"] for r in blind}
    assert len(train_writers) >= 5 and len(blind_writers) >= 2
    assert not train_writers & blind_writers  # the blind writers are in no training fold
    # Independent writers do write a few identical short messages ("hi ad", "phí ship bn
    # ad"); more than that would mean copied text.
    texts = {r["text"].strip().lower() for r in train}
    shared = [r["text"] for r in blind if r["text"].strip().lower() in texts]
    assert len(shared) <= 0.01 * len(blind), shared


def test_every_cell_in_every_style_and_the_special_kinds() -> None:
    rows = _rows("train") + _rows("blind")
    cells = Counter((r["severity"], r["queue"], r["style"]) for r in rows)
    thin = [(s, q, st) for s, q in CELLS for st in STYLES if cells[(s, q, st)] < 20]
    assert thin == []
    kinds = Counter((r.get("kind"), r["style"]) for r in rows)
    for kind in ("symptom", "two_message", "hard_negative", "question"):
        assert all(kinds[(kind, st)] >= 20 for st in STYLES), kind
    for r in rows:
        if r.get("kind") == "two_message":
            assert r.get("history") and all(isinstance(h, str) for h in r["history"])
        if r.get("kind") == "hard_negative":
            assert r["severity"] in ("low", "normal")
        if r["severity"] == "critical":
            assert r["queue"] == "safety"
