"""The website chat widget (bot/static/widget.js) in a real browser against the real gateway.

`gateway_url` (session scope, e.g. "http://127.0.0.1:PORT") comes from tests/browser/conftest.py;
`browser` (headless Chromium) from tests/browser/browser_fixtures.py.
"""

from __future__ import annotations

import asyncio
import unicodedata
from pathlib import Path
from typing import Any

from tests.browser import browser_fixtures
from tests.support import screenshot_dir

browser = browser_fixtures.browser  # the fixture, made visible to this module

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REPLY_TIMEOUT_MS = 30_000

# Playwright's CSS selectors pierce open shadow roots.
LAUNCHER = "careline-widget >> .launcher"
INPUT = "careline-widget >> textarea"
CUSTOMER_BUBBLES = "careline-widget >> .log .row.customer .bubble"
BOT_BUBBLES = "careline-widget >> .log .row.bot .bubble"
SHADOW = "document.querySelector('careline-widget').shadowRoot"

WARRANTY_Q = "bao hanh bao lau vay shop"
XSS_TEXT = "<img src=x onerror=alert(1)> va <script>alert(2)</script>"


def nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


async def open_page(browser: Any, url: str) -> tuple[Any, Any, list[str]]:
    """A fresh visitor (new context = empty localStorage) on the demo page."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="vi-VN")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(url + "/")
    await page.wait_for_function(
        "() => window.Careline && document.querySelector('careline-widget')"
    )
    return context, page, errors


async def ensure_open(page: Any) -> None:
    if await page.locator(LAUNCHER).get_attribute("aria-expanded") != "true":
        await page.locator(LAUNCHER).click()
    await page.locator(INPUT).wait_for(state="visible")


async def type_and_send(page: Any, text: str) -> None:
    await page.locator(INPUT).fill(text)
    await page.locator(INPUT).press("Enter")


async def state(page: Any) -> dict[str, Any]:
    return await page.evaluate("() => window.Careline.state()")


async def wait_stored_and_answered(page: Any, text: str) -> None:
    """Until the customer's `text` is acknowledged and a bot/agent message follows it."""
    await page.wait_for_function(
        """(text) => {
            const ms = window.Careline.state().messages;
            const i = ms.findIndex((m) => m.sender === 'customer' && m.text === text);
            return i >= 0 && !ms[i].pending && ms[i].id
                && ms.slice(i + 1).some((m) => m.sender === 'bot' || m.sender === 'agent');
        }""",
        arg=text,
        timeout=REPLY_TIMEOUT_MS,
    )


async def test_faq_answer_then_history_after_reload(browser: Any, gateway_url: str) -> None:
    context, page, errors = await open_page(browser, gateway_url)
    try:
        await ensure_open(page)
        await type_and_send(page, WARRANTY_Q)
        await wait_stored_and_answered(page, WARRANTY_Q)
        await page.wait_for_function(
            """() => window.Careline.state().messages.some((m) => m.sender === 'bot'
                && m.text.normalize('NFC').toLowerCase().includes('bảo hành'))""",
            timeout=REPLY_TIMEOUT_MS,
        )
        await asyncio.sleep(1.0)  # let follow-up messages / typing settle
        before = await state(page)
        assert before["connected"] and before["conversationId"]
        transcript = [(m["id"], m["sender"], m["text"]) for m in before["messages"]]
        warranty = [m for m in transcript if m[1] == "bot" and "bảo hành" in nfc(m[2]).lower()]
        assert warranty, transcript

        await page.reload()
        await page.wait_for_function("() => window.Careline && window.Careline.state")
        await ensure_open(page)
        await page.wait_for_function(
            "(n) => window.Careline.state().messages.length >= n",
            arg=len(transcript),
            timeout=REPLY_TIMEOUT_MS,
        )
        await asyncio.sleep(1.5)  # a duplicate (history + replayed event) would show up by now
        after = await state(page)
        ids = [m["id"] for m in after["messages"]]
        assert len(ids) == len(set(ids)), f"a message is rendered twice: {after['messages']}"
        assert after["conversationId"] == before["conversationId"]
        shown = [(m["id"], m["sender"], m["text"]) for m in after["messages"]]
        for m in transcript:
            assert shown.count(m) == 1, f"{m} not shown exactly once after reload: {shown}"
        customer = [m for m in after["messages"] if m["sender"] == "customer"]
        assert [m["text"] for m in customer].count(WARRANTY_Q) == 1
        assert not any(m["pending"] for m in after["messages"])
        # ... and on screen, not just in the model
        bubbles = page.locator("careline-widget >> .log .row.customer .bubble")
        assert [nfc(t) for t in await bubbles.all_text_contents()].count(WARRANTY_Q) == 1
        bot_bubbles = [
            nfc(t)
            for t in await page.locator(
                "careline-widget >> .log .row.bot .bubble"
            ).all_text_contents()
        ]
        assert bot_bubbles.count(nfc(warranty[0][2])) == 1

        await page.mouse.move(0, 0)
        await page.screenshot(path=str(screenshot_dir() / "widget.png"), animations="disabled")
        assert not errors, errors
    finally:
        await context.close()


async def test_markup_in_messages_is_shown_as_text(browser: Any, gateway_url: str) -> None:
    context, page, errors = await open_page(browser, gateway_url)
    dialogs: list[str] = []
    dismissals: list[asyncio.Future[Any]] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dismissals.append(asyncio.ensure_future(dialog.dismiss()))

    page.on("dialog", on_dialog)
    try:
        for attempt in ("live", "after reload"):
            if attempt == "live":
                await ensure_open(page)
                await type_and_send(page, XSS_TEXT)
            else:
                await page.reload()
                await page.wait_for_function("() => window.Careline && window.Careline.state")
                await ensure_open(page)
            await wait_stored_and_answered(page, XSS_TEXT)
            await asyncio.sleep(0.5)
            texts = await page.locator(
                "careline-widget >> .log .row.customer .bubble"
            ).all_text_contents()
            assert XSS_TEXT in texts, f"{attempt}: {texts}"
            found = await page.evaluate(
                f"""() => {{
                    const root = {SHADOW}, BAD = 'img, script, iframe';
                    return {{
                        inLog: root.querySelector('.log').querySelectorAll(BAD).length,
                        inWidget: root.querySelectorAll(BAD).length,
                    }};
                }}"""
            )
            assert found == {"inLog": 0, "inWidget": 0}, f"{attempt}: {found}"
            assert dialogs == [], f"{attempt}: a dialog fired: {dialogs}"
        assert not errors, errors
    finally:
        await context.close()


async def test_a_message_typed_during_a_database_outage_is_sent_once_it_is_back(
    browser: Any, tmp_path: Path, nlu_url: str
) -> None:
    """The widget keeps a message the server refused as `unavailable` and sends it again
    after retry_after for as long as the outage lasts (more refusals than an `internal`
    error's three tries); once the database is back it is stored once and answered."""
    from prometheus_client import REGISTRY

    from tests.support import backend_settings, running_gateway, tcp_link, with_section

    def refusals() -> float:
        got = REGISTRY.get_sample_value("careline_widget_errors_total", {"code": "unavailable"})
        return got or 0.0

    async with (
        backend_settings("postgresql", tmp_path) as s,
        tcp_link("127.0.0.1", 5432) as link,
    ):
        through_link = s.database.url.replace("127.0.0.1:5432", f"127.0.0.1:{link.port}")
        async with running_gateway(with_section(s, "database", url=through_link), nlu_url) as g:
            context, page, errors = await open_page(browser, g.url)
            try:
                await ensure_open(page)
                await page.wait_for_function("() => window.Careline.state().connected")
                await link.cut()
                before = refusals()
                await type_and_send(page, WARRANTY_Q)
                for _ in range(200):  # until the server has refused it four times
                    if refusals() - before >= 4:
                        break
                    await asyncio.sleep(0.1)
                assert refusals() - before >= 4, "the widget stopped retrying"
                mine = [m for m in (await state(page))["messages"] if m["sender"] == "customer"]
                assert [(m["text"], m["pending"]) for m in mine] == [(WARRANTY_Q, True)]
                await link.restore()
                await wait_stored_and_answered(page, WARRANTY_Q)
                conv = (await state(page))["conversationId"]
                stored = [m.text for m in await g.gw.db.transcript(conv) if m.sender == "customer"]
                assert stored == [WARRANTY_Q]
                assert not errors, errors
            finally:
                await context.close()
