"""The `careline` commands a person uses to poke the NLU: parse, nlu eval, run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nlu.process import free_port

pytestmark = pytest.mark.nlu
CARELINE = str(Path(sys.executable).parent / "careline")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NLU_URL"}
    env.update(extra)
    return env


def _json_stream(text: str) -> list[dict]:
    """The pretty-printed JSON documents `careline parse` prints one after another."""
    decoder, docs, i = json.JSONDecoder(), [], 0
    while i < len(text.rstrip()):
        doc, i = decoder.raw_decode(text, i)
        docs.append(doc)
        while i < len(text) and text[i].isspace():
            i += 1
    return docs


def test_parse_against_a_running_service(nlu_url: str) -> None:
    out = subprocess.run(
        [CARELINE, "parse", "shop oi bh bao lau vay", "where is my order DH123456?"],
        env=_env(NLU_URL=nlu_url), capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    docs = _json_stream(out.stdout)
    assert len(docs) == 2
    assert docs[1]["intent"]["name"] == "order_status"
    assert docs[0]["careline"]["language"] == "vi"


def test_parse_starts_a_local_service_when_no_url_is_set(nlu_model: Path) -> None:
    out = subprocess.run(
        [CARELINE, "parse", "cửa hàng mở cửa lúc mấy giờ"],
        env=_env(), capture_output=True, text=True, check=True, timeout=240,
    )  # fmt: skip
    assert "starting a local NLU service" in out.stderr
    assert json.loads(out.stdout)["intent"]["name"] == "store_hours"


def test_nlu_eval_reports_accuracy_macro_f1_and_slices(nlu_model: Path, tmp_path: Path) -> None:
    report = tmp_path / "eval.json"
    out = subprocess.run(
        [CARELINE, "nlu", "eval", "--json", str(report)],
        env=_env(), capture_output=True, text=True, check=True, timeout=240,
    )  # fmt: skip
    data = json.loads(report.read_text())
    assert {"all", "lang:vi", "lang:en", "vi:diacritics", "vi:no-diacritics"} <= set(data)
    assert data["all"]["n"] >= 300
    assert 0.8 <= data["all"]["accuracy"] <= 1.0 and 0.0 < data["all"]["macro_f1"] <= 1.0
    assert "vi:no-diacritics" in out.stdout and "macro-F1" in out.stdout


def test_nlu_eval_refuses_a_budget_that_is_not_a_share() -> None:
    out = subprocess.run(
        [CARELINE, "nlu", "eval", "--benchmark", "hint3-sofmattress", "--in-scope-budget", "2"],
        capture_output=True, text=True, env=_env(), timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "between 0 and 1 (0.01 is one point), not 2.0" in out.stderr


def test_run_prints_urls_serves_and_stops_cleanly(nlu_model: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [CARELINE, "run", "--nlu-port", str(port)],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}" in text, text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "careline stopped." in rest
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
