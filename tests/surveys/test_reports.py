"""Every KPI on a hand-checked fixture (tests/surveys/fixture_rows.py), filters and targets,
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from bot.core.settings import Settings
from surveys.kpis import percentile
from surveys.reports import Scope, ScopeError, survey_report
from tests.surveys.fixture_rows import load_fixture

TZ = "Asia/Ho_Chi_Minh"


def scope(**filters: str) -> Scope:
    return Scope.parse({"from": "2026-03-10", "to": "2026-03-12", **filters}, TZ)


async def test_every_kpi_on_the_hand_checked_fixture(db: Any, settings: Settings) -> None:
    await load_fixture(db)
    r = await survey_report(db, settings, scope())
    k = r["kpis"]
    assert k["volume"] == 6  # c7 and c8 are outside the local-time range
    assert (k["responses"], k["response_rate_pct"]) == (5, 83.33)
    assert (k["csat_pct"], k["csat_responses"]) == (50.0, 4)  # 5,4 of 5,4,1,3
    assert (k["ces_mean"], k["ces_responses"]) == (4.8, 5)  # (7+5+2+6+4)/5
    assert (k["nps"], k["nps_responses"]) == (0.0, 3)  # 1 promoter (10), 1 detractor (3)
    assert k["fcr_pct"] == 66.67  # c2 reopened, c3 came back: 4 of 6
    assert k["containment_pct"] == 50.0  # c1, c4, c6
    assert k["first_response_s"] == {"p50": 300.0, "p90": 590.0, "n": 3}  # 70, 300, 590
    assert k["resolution_s"] == {"p50": 300.0, "p90": 3600.0, "n": 6}
    assert r["distributions"]["ces"] == {"1": 0, "2": 1, "3": 0, "4": 1, "5": 1, "6": 1, "7": 1}
    assert r["distributions"]["csat"] == {"1": 1, "2": 0, "3": 1, "4": 1, "5": 1}
    assert r["distributions"]["status"] == {"completed": 4, "expired": 1, "skipped": 1}
    assert r["trend"] == [
        {"date": "2026-03-10", "volume": 5, "responses": 4, "csat_pct": 66.67, "ces_mean": 5.0},
        {"date": "2026-03-11", "volume": 1, "responses": 1, "csat_pct": 0.0, "ces_mean": 4.0},
    ]
    targets = {t["kpi"]: t for t in r["targets"]}
    assert targets["csat_pct"] == {"kpi": "csat_pct", "target": 80.0, "value": 50.0,
                                   "met": False, "attainment_pct": 62.5}  # fmt: skip
    assert targets["ces_mean"]["met"] is False and targets["ces_mean"]["attainment_pct"] == 87.3
    assert targets["fcr_pct"]["met"] is False and targets["fcr_pct"]["attainment_pct"] == 95.2
    assert r["scope"] == {"start": "2026-03-10", "end": "2026-03-12", "tz": TZ}


@pytest.mark.parametrize(
    ("filters", "volume", "csat_pct", "ces_mean"),
    [
        ({"channel": "telegram"}, 2, 0.0, 2.0),  # c3, c4
        ({"agent": "a1"}, 2, 100.0, 5.5),  # c2, c5
        ({"queue": "technical"}, 2, 100.0, 5.5),  # c2, c5
        ({"severity": "normal"}, 2, 0.0, 4.0),  # c3, c5
        ({"language": "en"}, 2, 0.0, 4.0),  # c3, c5
        ({"channel": "widget", "language": "vi"}, 3, 66.67, 5.333),  # c1, c2, c6
        ({"agent": "nobody"}, 0, None, None),
    ],
)
async def test_filters(
    db: Any, settings: Settings, filters: dict[str, str], volume: int, csat_pct: Any,
    ces_mean: Any,
) -> None:  # fmt: skip
    await load_fixture(db)
    k = (await survey_report(db, settings, scope(**filters)))["kpis"]
    assert (k["volume"], k["csat_pct"], k["ces_mean"]) == (volume, csat_pct, ces_mean)


async def test_a_met_target_is_shown_as_met(db: Any, settings: Settings) -> None:
    await load_fixture(db)
    r = await survey_report(db, settings, scope(agent="a1"))
    ces = next(t for t in r["targets"] if t["kpi"] == "ces_mean")
    assert ces == {"kpi": "ces_mean", "target": 5.5, "value": 5.5, "met": True,
                   "attainment_pct": 100.0}  # fmt: skip


def test_nearest_rank_percentiles() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 90) == 7.0
    assert percentile([1, 2, 3, 4], 50) == 2.0
    assert percentile(list(range(1, 11)), 90) == 9.0
    assert percentile(list(range(1, 11)), 91) == 10.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"from": "2026-13-01"}, "'from' must be a date"),
        ({"from": "2026-03-12", "to": "2026-03-10"}, "is after"),
        ({"to": "yesterday'; DROP TABLE x"}, "'to' must be a date"),
        ({"from": "1900-01-01", "to": "2026-01-01"}, "limited to"),
        ({"channel": "x" * 101}, "longer than"),
    ],
)
def test_bad_scope_is_rejected_with_a_clear_message(raw: dict[str, str], message: str) -> None:
    with pytest.raises(ScopeError, match=message):
        Scope.parse(raw, TZ)


def test_default_scope_is_the_last_30_days() -> None:
    s = Scope.parse({}, TZ, today=date(2026, 3, 31))
    assert (s.start, s.end) == (date(2026, 3, 2), date(2026, 3, 31))
