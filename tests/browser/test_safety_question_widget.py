"""The quick safety question in the real widget (Chromium): the buttons, a tap on yes, and
the no-answer timeout, against a real gateway whose question times out after 1 s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.browser import browser_fixtures
from tests.browser.test_widget import BOT_BUBBLES, ensure_open, open_page, type_and_send
from tests.support import backend_settings, running_gateway

browser = browser_fixtures.browser  # the fixture, made visible to this module

CHIPS = "careline-widget >> .qr .chip"
WORRIED = "sạc mà sợ nổ quá"
TIMEOUT_MS = 30_000


@pytest.fixture
async def quick_url(tmp_path, nlu_url: str) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    async with backend_settings("sqlite", tmp_path) as s:
        model = s.triage.model.model_copy(update={"ask_timeout_s": 1.0})
        s = s.model_copy(update={"triage": s.triage.model_copy(update={"model": model})})
        async with running_gateway(s, nlu_url) as g:
            yield g.url


async def _ask(page: Any) -> None:
    await ensure_open(page)
    await type_and_send(page, WORRIED)
    await page.locator(CHIPS).first.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert await page.locator(CHIPS).all_inner_texts() == ["Có", "Không"]
    assert "mùi khét" in (await page.locator(BOT_BUBBLES).last.inner_text())


async def test_tapping_yes_gives_the_emergency_steps(browser: Any, quick_url: str) -> None:
    context, page, errors = await open_page(browser, quick_url)
    try:
        await _ask(page)
        await page.locator(CHIPS).first.click()
        await page.wait_for_function(
            "() => window.Careline.state().messages.some((m) => m.text.includes('114'))",
            timeout=TIMEOUT_MS,
        )
        texts = [
            m["text"] for m in (await page.evaluate("() => window.Careline.state()"))["messages"]
        ]
        assert any(t == "Có" for t in texts)  # the tap is the customer's answer, in the log
        assert errors == []
    finally:
        await context.close()


async def test_no_answer_in_time_gives_the_emergency_steps(browser: Any, quick_url: str) -> None:
    context, page, errors = await open_page(browser, quick_url)
    try:
        await _ask(page)  # and then nothing: the 1 s deadline passes
        await page.wait_for_function(
            "() => window.Careline.state().messages.some((m) => m.text.includes('114'))",
            timeout=TIMEOUT_MS,
        )
        assert errors == []
    finally:
        await context.close()
