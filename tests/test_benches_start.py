"""Every bench starts: its imports resolve and it parses its command line (`--help`), in the
environment its own docstring names. A bench that no longer runs is a bug, and moving code
between modules breaks a bench's imports long before anyone runs it again."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USAGE = re.compile(r"(\.venv(?:-nlu)?)/bin/python bench/(\w+)\.py")


def _benches() -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / "bench").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        usage = USAGE.search(text)
        if "argparse" in text and "__main__" in text and usage:
            found.append((path.name, usage.group(1)))
    return found


BENCHES = _benches()


def test_the_benches_are_found() -> None:
    assert {"gateway_bench.py", "handoff_bench.py", "fault_run.py"} <= {b for b, _ in BENCHES}


@pytest.mark.parametrize(("bench", "venv"), BENCHES)
def test_bench_starts(bench: str, venv: str) -> None:
    proc = subprocess.run(
        [str(ROOT / venv / "bin" / "python"), f"bench/{bench}", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout
