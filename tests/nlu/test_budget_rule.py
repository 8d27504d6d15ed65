"""The decision rule of bench/budget_study.py: the default in-scope budget hinges on it."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import budget_study as bs
import threshold_study as ts

STOCK = bs.Figures(accuracy=0.70, in_scope=0.80, oos_recall=0.40)
GOOD = bs.Figures(accuracy=0.75, in_scope=0.80, oos_recall=0.45)


def outcome(index: int, shape: str, source: str, **ours: bs.Figures) -> bs.Outcome:
    figures = {str(b): ours.get(f"b{int(b * 100)}", GOOD) for b in bs.BUDGETS}
    return bs.Outcome(source, shape, index, STOCK, figures, {b: 0.3 for b in figures})


def rounds(n: int, **ours: bs.Figures) -> list[bs.Outcome]:
    return [outcome(i, shape, source, **ours) for i in range(n) for shape in ts.SHAPES
            for source in ("clinc150", "banking77")]  # fmt: skip


def test_a_draw_passes_only_when_all_three_parts_of_the_bar_hold() -> None:
    assert outcome(0, "x", "y").passes("0.01")
    for worse in (
        bs.Figures(accuracy=0.70, in_scope=0.80, oos_recall=0.45),  # accuracy only ties stock
        bs.Figures(accuracy=0.75, in_scope=0.80, oos_recall=0.40),  # recall only ties stock
        bs.Figures(accuracy=0.75, in_scope=0.7899, oos_recall=0.45),  # > 1 point in scope lost
    ):
        assert not outcome(0, "x", "y", b1=worse).passes("0.01")
    assert outcome(0, "x", "y", b1=bs.Figures(0.75, 0.79, 0.45)).passes("0.01")  # exactly 1


def test_the_default_moves_only_to_a_budget_that_passes_more_draws() -> None:
    fail = bs.Figures(accuracy=0.60, in_scope=0.80, oos_recall=0.45)
    # 0.01 fails everywhere, 0.02 and 0.03 pass everywhere: the smaller one wins the tie
    assert bs.summary(rounds(2, b1=fail)).endswith("becomes 0.02")
    # everything passes: no reason to move
    assert bs.summary(rounds(2)).endswith("becomes 0.01")


def test_only_complete_rounds_count() -> None:
    fail = bs.Figures(accuracy=0.60, in_scope=0.80, oos_recall=0.45)
    done = rounds(1)
    partial = [outcome(1, "sofmattress", "clinc150", b2=fail, b3=fail, b5=fail)]
    text = bs.summary(done + partial)
    assert text.startswith("6 draws in 1 complete rounds")
    assert "no verdict yet" in text  # the rule needs two rounds
    assert "1 draws of unfinished rounds (not used by the rule)" in text
    # the unfinished draw fails 0.02-0.05, yet the rule's table counts only round 0
    assert "| 0.02 | 6/6 |" in text and "| 0.02 | 0/1 |" in text


def test_shards_merge_into_one_outcome_per_draw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = rounds(1)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps([asdict(o) for o in whole[0::2]]))
    b.write_text(json.dumps([asdict(o) for o in whole[1::2] + whole[:1]]))  # one overlap
    assert bs.main(["--summarize", str(a), str(b)]) == 0
    assert capsys.readouterr().out.startswith("6 draws in 1 complete rounds")
