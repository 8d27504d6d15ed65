"""A hazard answer promises only what will happen: the staffing of the safety queue and the
agents online decide between "a specialist is joining now", "call the 24/7 safety line now"
and an honest callback; the emergency numbers always come first."""

from __future__ import annotations

from typing import Any

from bot.channels.widget_client import WidgetClient
from bot.core.settings import OpeningHours, QueueStaffing
from handoff.web.agent_client import AgentClient
from tests.handoff.conftest import PASSWORD, add_account
from tests.support import backend_settings, running_gateway, with_section

HAZARD = "my phone is smoking and smells like burning plastic"
CLOSED = OpeningHours(start="00:00", end="00:01", days=["mon"])  # practically never open


async def _safety_answer(g: Any) -> str:
    c = WidgetClient(g.ws_url, locale="en")
    try:
        await c.connect()
        await c.say(HAZARD)
        first = await c.bot_reply()
        return first["text"]
    finally:
        await c.close()


def _first_line_is_emergency(text: str) -> bool:
    return text.splitlines()[0].startswith("Emergency") and "114" in text.splitlines()[0]


async def test_nobody_online_and_a_24_7_line_says_call_it_now(tmp_path, nlu_url) -> None:  # type: ignore[no-untyped-def]
    async with backend_settings("sqlite", tmp_path) as s:
        line = QueueStaffing(hours="always", hotline="1800 1234")
        s = with_section(s, "handoff", opening_hours=CLOSED, staffing={"safety": line})
        async with running_gateway(s, nlu_url) as g:
            text = await _safety_answer(g)
    assert _first_line_is_emergency(text), text
    assert text.splitlines()[-1].startswith("The Sao Việt Mobile safety team is on call 24/7")
    assert "call 1800 1234 now" in text
    assert "joining" not in text


async def test_nobody_online_and_no_line_is_an_honest_callback(tmp_path, nlu_url) -> None:  # type: ignore[no-untyped-def]
    async with backend_settings("sqlite", tmp_path) as s:
        s = with_section(s, "handoff", opening_hours=CLOSED, staffing={})
        async with running_gateway(s, nlu_url) as g:
            text = await _safety_answer(g)
    assert _first_line_is_emergency(text), text
    assert "No safety specialist is online right now" in text.splitlines()[-1]
    assert "immediately" not in text and "joining" not in text


async def test_an_agent_online_for_safety_is_joining_now(tmp_path, nlu_url) -> None:  # type: ignore[no-untyped-def]
    async with backend_settings("postgresql", tmp_path) as s:
        s = with_section(s, "handoff", staffing={})  # always open in tests
        async with running_gateway(s, nlu_url) as g:
            await add_account(g, "sam", queues=["safety"])
            async with AgentClient(g.url) as agent:
                await agent.login("sam", PASSWORD)
                await agent.online()
                text = await _safety_answer(g)
    assert _first_line_is_emergency(text), text
    assert text.splitlines()[-1] == "A Sao Việt Mobile safety specialist is joining this chat now."
