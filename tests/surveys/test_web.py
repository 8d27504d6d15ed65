"""Manager report JSON and exports over HTTP: role-checked, validated, same figures as the
hand-checked fixture; on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from typing import Any

import aiohttp
import pytest

from handoff.web.agent_client import AgentAPIError, AgentClient
from tests.handoff.conftest import PASSWORD, add_account
from tests.surveys.fixture_rows import IN_SCOPE, load_fixture

RANGE = "from=2026-03-10&to=2026-03-12"


async def _client(g: Any, username: str, role: str) -> AgentClient:
    await add_account(g, username, role=role)
    c = AgentClient(g.url)
    await c.login(username, PASSWORD)
    return c


async def test_reports_need_a_manager(gateway) -> None:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as anon:
        for path in ("/api/reports/surveys", "/api/reports/surveys/export?format=csv"):
            async with anon.get(gateway.url + path) as r:
                assert r.status == 401
        async with anon.get(gateway.url + "/manager/dashboard", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"].startswith("/login?next=")
    agent = await _client(gateway, "an", "agent")
    supervisor = await _client(gateway, "binh", "supervisor")
    try:
        for who in (agent, supervisor):
            with pytest.raises(AgentAPIError) as e:
                await who.get("/api/reports/surveys")
            assert e.value.status == 403
    finally:
        await agent.close()
        await supervisor.close()


async def test_report_json_and_csv_export_for_a_manager(gateway) -> None:  # type: ignore[no-untyped-def]
    await load_fixture(gateway.gw.db)
    for role in ("manager", "admin"):
        m = await _client(gateway, f"boss-{role}", role)
        try:
            r = await m.get(f"/api/reports/surveys?{RANGE}&options=1")
            assert r["kpis"]["volume"] == 6 and r["kpis"]["csat_pct"] == 50.0
            assert r["kpis"]["ces_mean"] == 4.8 and r["kpis"]["fcr_pct"] == 66.67
            assert r["options"]["channel"] == ["telegram", "widget"]
            f = await m.get(f"/api/reports/surveys?{RANGE}&agent=a1")
            assert f["kpis"]["volume"] == 2 and f["scope"]["agent"] == "a1"

            async with m.http.get(f"{gateway.url}/api/reports/surveys/export?{RANGE}"
                                  "&format=csv&channel=telegram") as resp:  # fmt: skip
                assert resp.status == 200
                assert (
                    'filename="surveys_2026-03-10_2026-03-12.csv"'
                    in resp.headers["Content-Disposition"]
                )
                body = await resp.read()
            rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
            assert [row["conversation_id"] for row in rows] == ["c3", "c4"]
            assert rows[0]["comment"] == "'=1+1"

            async with m.http.get(f"{gateway.url}/api/reports/surveys/export?{RANGE}"
                                  "&format=xlsx") as resp:  # fmt: skip
                assert resp.status == 200
                data = await resp.read()
            from openpyxl import load_workbook

            ws = load_workbook(io.BytesIO(data), read_only=True).active
            ids = [row[0] for row in ws.iter_rows(min_row=2, values_only=True)]
            assert ids == IN_SCOPE
        finally:
            await m.close()


BAD = [
    ("/api/reports/surveys?from=2026-02-30", "bad_scope"),
    ("/api/reports/surveys?from=2026-03-12&to=2026-03-01", "bad_scope"),
    ("/api/reports/surveys?channel=" + "x" * 101, "bad_scope"),
    (f"/api/reports/surveys/export?{RANGE}&format=pdf", "bad_format"),
]


async def test_bad_parameters_get_a_clear_400(gateway) -> None:  # type: ignore[no-untyped-def]
    m = await _client(gateway, "mai", "manager")
    try:
        for path, code in BAD:
            with pytest.raises(AgentAPIError) as e:
                await m.get(path)
            assert e.value.status == 400, path
            assert e.value.body["error"]["code"] == code, path
    finally:
        await m.close()
