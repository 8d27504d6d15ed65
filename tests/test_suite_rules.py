"""The suite's own rules hold: a skipped test that is not marked optional fails the run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HOOKS = (
    "from tests.conftest import (pytest_configure, pytest_runtest_logreport,\n"
    "    pytest_runtest_makereport,\n"
    "    pytest_sessionfinish, pytest_terminal_summary)\n"
)


def _run(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    optional: may skip\n")
    (tmp_path / "conftest.py").write_text(HOOKS)
    (tmp_path / "test_tiny.py").write_text("import pytest\n\n" + body)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
         str(tmp_path / "pytest.ini"), *args, str(tmp_path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_an_unmarked_skip_fails_the_run(tmp_path: Path) -> None:
    out = _run(tmp_path, "def test_x():\n    pytest.skip('no reason')\n")
    assert out.returncode != 0, out.stdout
    assert "skipped tests that are not optional" in out.stdout


def test_a_skip_marked_optional_does_not(tmp_path: Path) -> None:
    out = _run(tmp_path, "@pytest.mark.optional\ndef test_x():\n    pytest.skip('optional')\n")
    assert out.returncode == 0, out.stdout


def test_an_unmarked_skip_fails_a_parallel_run(tmp_path: Path) -> None:
    """`make test` runs the suite on several workers: the verdict is the controller's."""
    out = _run(tmp_path, "def test_x():\n    pytest.skip('no reason')\n", "-n", "2")
    assert out.returncode != 0, out.stdout
    assert "skipped tests that are not optional" in out.stdout
