"""The manager dashboard in a real browser (Debian's Chromium via playwright) against the
real gateway on PostgreSQL with demo data; saves docs/screenshots/dashboard.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.core.store.models import utcnow
from surveys.demo import fill, insert_rows
from tests.browser import browser_fixtures
from tests.handoff.conftest import PASSWORD, add_account
from tests.support import backend_settings, running_gateway, screenshot_dir

browser = browser_fixtures.browser  # the session's headless Chromium

HOSTILE_AGENT = '<img src=x onerror="window.__pwned=1">'


async def _hostile_row(db: Any) -> None:
    """A resolved conversation whose agent id is markup: the filter list must show it as text."""
    now = utcnow()
    common = {"channel": "widget", "language": "vi"}
    await insert_rows(db, "customer", [{"id": "cust-x", "external_id": "demo-x", **common,
                      "display_name": "Demo customer", "unreachable": False,
                      "created_at": now, "last_seen_at": now}])  # fmt: skip
    await insert_rows(db, "conversation", [{"id": "conv-x", "customer_id": "cust-x", **common,
                      "state": "CLOSED", "created_at": now, "updated_at": now,
                      "resolved_at": now, "closed_at": now, "reopen_count": 0,
                      "agent_id": HOSTILE_AGENT, "bot_only": False}])  # fmt: skip
    await insert_rows(db, "survey_response", [{"conversation_id": "conv-x",
                      "customer_id": "cust-x", **common, "agent_id": HOSTILE_AGENT,
                      "bot_only": False, "reopened": False, "demo": True, "status": "completed",
                      "ces": 7, "csat": 5, "conversation_created_at": now, "resolved_at": now,
                      "asked_at": now, "expires_at": now}])  # fmt: skip


async def test_dashboard_in_a_real_browser(browser: Any, tmp_path: Path, nlu_url: str) -> None:
    async with (
        backend_settings("postgresql", tmp_path) as s,
        running_gateway(s, nlu_url) as g,
    ):
        await fill(g.gw.db, 4000, days=30, seed=11)
        await _hostile_row(g.gw.db)
        await add_account(g, "linh", role="manager", display_name="Linh Trần")
        context = await browser.new_context(viewport={"width": 1360, "height": 900})
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            # Not logged in: the page sends managers to the login form.
            await page.goto(g.url + "/manager/dashboard")
            assert "/login" in page.url
            login = await page.request.post(
                g.url + "/api/auth/login", data={"username": "linh", "password": PASSWORD}
            )
            assert login.ok
            await page.goto(g.url + "/manager/dashboard")
            await page.wait_for_selector("body[data-loaded='true']", timeout=30_000)

            api = await (await page.request.get(g.url + "/api/reports/surveys")).json()
            cards = page.locator("#cards .card")
            assert await cards.count() == 8
            csat = page.locator(".card[data-kpi='CSAT'] .value")
            assert (await csat.text_content()) == f"{api['kpis']['csat_pct']:g}%"
            target = await page.locator(".card[data-kpi='CSAT'] .target").text_content()
            assert "target 80" in target
            assert await page.locator("#ces rect").count() == 7
            assert await page.locator("#csat rect").count() == 5
            assert await page.locator("#trend rect.volume").count() == len(api["trend"])
            assert await page.locator("#trend polyline.csat-line").count() == 1
            await page.wait_for_timeout(300)  # let fonts settle for the screenshot
            await page.screenshot(path=str(screenshot_dir() / "dashboard.png"), full_page=True)

            # The hostile agent id is an option's text, never markup.
            options = await page.locator("select[name=agent] option").all_text_contents()
            assert HOSTILE_AGENT in options
            assert await page.evaluate("() => document.querySelectorAll('main img').length") == 0
            assert await page.evaluate("() => window.__pwned") is None

            # Filtering by channel redraws with the filtered figures and updates the exports.
            await page.select_option("select[name=channel]", "telegram")
            await page.click("button[type=submit]")
            filtered = await (
                await page.request.get(g.url + "/api/reports/surveys?channel=telegram")
            ).json()
            volume = page.locator(".card[data-kpi='Conversations'] .value")
            want = f"{filtered['kpis']['volume']:,}"
            await page.wait_for_function(
                "(w) => document.querySelector(\".card[data-kpi='Conversations'] .value\")"
                ".textContent === w",
                arg=want,
            )
            assert (await volume.text_content()) == want
            assert filtered["kpis"]["volume"] < api["kpis"]["volume"]
            href = await page.locator("#export-csv").get_attribute("href")
            assert "channel=telegram" in href and "format=csv" in href
            async with page.expect_download() as info:
                await page.click("#export-csv")
            download = await info.value
            saved = tmp_path / "export.csv"
            await download.save_as(saved)
            lines = saved.read_bytes().decode("utf-8-sig").splitlines()
            assert len(lines) == 1 + filtered["kpis"]["volume"]
            assert not errors, errors
        finally:
            await context.close()
