"""Exports opened back with the csv module and with openpyxl and compared row by row with
the fixture (and with each other); spreadsheet formula injection neutralized; the CLI."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from bot.core.settings import Settings
from surveys.export import COLUMNS, export, neutralize
from surveys.reports import Scope
from tests.surveys.fixture_rows import IN_SCOPE, load_fixture

TZ = "Asia/Ho_Chi_Minh"
SCOPE = Scope.parse({"from": "2026-03-10", "to": "2026-03-12"}, TZ)
# What each fixture comment must look like in a spreadsheet: inert text.
NEUTRALIZED = {
    "c1": "'+cmd|' /C calc'!A0",
    "c2": "'-2+3",
    "c3": "'=1+1",
    "c4": "'\rCR",
    "c5": "'@SUM(A1)",
    "c6": "'\tTư vấn tốt, cảm ơn",
}


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@A1", "\tx", "\rx"])
def test_formula_starts_are_neutralized(value: str) -> None:
    assert neutralize(value) == "'" + value


@pytest.mark.parametrize("value", ["", "hài lòng", "1+1", " =1", "'=1"])
def test_plain_text_is_left_alone(value: str) -> None:
    assert neutralize(value) == value


def _expected(fixture: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id = {s["conversation_id"]: s for s in fixture}
    rows = []
    for cid in IN_SCOPE:  # the fixture's in-scope rows are already in resolution order
        s = by_id[cid]
        first = (
            (s["first_human_reply_at"] - s["escalated_at"]).total_seconds()
            if s["first_human_reply_at"] else None
        )  # fmt: skip
        rows.append({
            "conversation_id": cid, "channel": s["channel"], "language": s["language"],
            "queue": s["queue"], "agent_id": s["agent_id"],
            "handled_by": "bot" if s["bot_only"] else "human",
            "first_contact_resolution": not s["reopened"] and s["repeat_contact_at"] is None,
            "survey_status": s["status"], "ces": s["ces"], "csat": s["csat"], "nps": s["nps"],
            "comment": NEUTRALIZED[cid],
            "resolved_at": s["resolved_at"].astimezone(UTC).replace(tzinfo=None),
            "first_response_s": first,
            "resolution_s": (s["resolved_at"] - s["conversation_created_at"]).total_seconds(),
        })  # fmt: skip
    return rows


def _from_csv(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads the file as UTF-8
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    from datetime import datetime

    def num(v: str) -> Any:
        return None if v == "" else (float(v) if "." in v else int(v))

    return [{
        "conversation_id": r["conversation_id"], "channel": r["channel"],
        "language": r["language"], "queue": r["queue"] or None, "agent_id": r["agent_id"] or None,
        "handled_by": r["handled_by"],
        "first_contact_resolution": r["first_contact_resolution"] == "true",
        "survey_status": r["survey_status"], "ces": num(r["ces"]), "csat": num(r["csat"]),
        "nps": num(r["nps"]), "comment": r["comment"],
        "resolved_at": datetime.fromisoformat(r["resolved_at"]).replace(tzinfo=None),
        "first_response_s": num(r["first_response_s"]),
        "resolution_s": num(r["resolution_s"]),
    } for r in rows]  # fmt: skip


def _from_xlsx(path: Path) -> list[dict[str, Any]]:
    ws = load_workbook(path, read_only=True).active
    it = ws.iter_rows(values_only=True)
    header = next(it)
    assert tuple(header) == COLUMNS
    keys = _expected_keys()
    out = []
    for values in it:
        r = dict(zip(header, values, strict=True))
        out.append({k: r[k] for k in keys})
    return out


def _expected_keys() -> list[str]:
    return ["conversation_id", "channel", "language", "queue", "agent_id", "handled_by",
            "first_contact_resolution", "survey_status", "ces", "csat", "nps", "comment",
            "resolved_at", "first_response_s", "resolution_s"]  # fmt: skip


async def test_csv_and_xlsx_round_trip_row_by_row(db: Any, tmp_path: Path) -> None:
    fixture = await load_fixture(db)
    expected = _expected(fixture)
    csv_path, xlsx_path = tmp_path / "s.csv", tmp_path / "s.xlsx"
    seen: list[int] = []
    assert await export(db, SCOPE, "csv", csv_path, seen.append) == len(IN_SCOPE)
    assert seen[-1] == len(IN_SCOPE)
    assert await export(db, SCOPE, "xlsx", xlsx_path) == len(IN_SCOPE)
    from_csv, from_xlsx = _from_csv(csv_path), _from_xlsx(xlsx_path)
    for i, want in enumerate(expected):
        assert from_csv[i] == want, f"csv row {i}"
        # XML (inside XLSX) normalizes a stored CR to LF when read back; still neutralized.
        xlsx_want = {**want, "comment": want["comment"].replace("\r", "\n")}
        assert from_xlsx[i] == xlsx_want, f"xlsx row {i}"
    assert len(from_csv) == len(from_xlsx) == len(expected)
    # No cell of the workbook is a formula.
    ws = load_workbook(xlsx_path).active
    assert all(c.data_type != "f" for row in ws.iter_rows() for c in row)


async def test_filtered_export(db: Any, tmp_path: Path) -> None:
    await load_fixture(db)
    path = tmp_path / "t.csv"
    scope = Scope.parse({"from": "2026-03-10", "to": "2026-03-12", "channel": "telegram"}, TZ)
    assert await export(db, scope, "csv", path) == 2
    assert [r["conversation_id"] for r in _from_csv(path)] == ["c3", "c4"]


def test_cli_export_and_demo_data(tmp_path: Path, settings: Settings) -> None:
    """`careline demo-data` then `careline export surveys` as an operator runs them."""
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"}
    careline = [sys.executable, "-m", "bot.cli"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*careline, *args], env=env, capture_output=True, text=True,
                              check=False)  # fmt: skip

    demo = run("demo-data", "--conversations", "300", "--days", "10", "--seed", "3")
    assert demo.returncode == 0, demo.stderr
    assert "inserted 300 demo conversations" in demo.stderr
    out = tmp_path / "all.csv"
    ex = run("export", "surveys", "--format", "csv", "-o", str(out))
    assert ex.returncode == 0, ex.stderr
    assert "export csv [" in ex.stderr and "100%" in ex.stderr  # the progress bar's last state
    with out.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 300 and all(r["demo"] == "true" for r in rows)
    bad = run("export", "surveys", "--from", "2026-02-30", "-o", str(out))
    assert bad.returncode == 2 and "'from' must be a date" in bad.stderr
