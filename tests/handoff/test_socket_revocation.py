"""An open console socket does not outlive its session: logged out everywhere (announced to
every replica at once), disabled or with a changed password (found by the socket's own
re-check), it is closed and receives nothing more, even if it never sends a heartbeat."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.channels.widget_client import WidgetClient
from handoff.web.agent_client import AgentClient
from tests.handoff.conftest import PASSWORD, add_account, desk_settings
from tests.support import backend_settings, running_gateway


async def _closed(a: AgentClient, timeout: float) -> dict[str, Any]:
    """The unauthenticated error the socket gets before it is closed."""
    return await a.next_frame(
        lambda f: f["type"] == "error" and f["code"] == "unauthenticated", timeout=timeout
    )


async def _escalate(g: Any) -> str:
    c = WidgetClient(g.ws_url)
    await c.connect()
    await c.say("cho mình gặp nhân viên")
    await c.expect(lambda f: f["type"] == "event" and f["event"].get("state") == "WAITING_AGENT")
    await c.close()
    return c.conversation_id or ""


async def test_logout_everywhere_closes_sockets_on_every_replica(tmp_path, nlu_url) -> None:  # type: ignore[no-untyped-def]
    async with backend_settings("sqlite", tmp_path) as s:
        s = desk_settings(s)
        async with (
            running_gateway(s, nlu_url, replica="A") as a_gw,
            running_gateway(s, nlu_url, replica="B") as b_gw,
        ):
            await add_account(a_gw, "hanh")
            on_b = AgentClient(b_gw.url)
            other = AgentClient(a_gw.url)
            try:
                await on_b.login("hanh", PASSWORD)
                await on_b.connect()  # and never a heartbeat
                await other.login("hanh", PASSWORD)
                await other.post("/api/auth/logout-all")  # on the other replica
                await _closed(on_b, timeout=3)  # at once, not at the next heartbeat
                await _escalate(a_gw)
                await asyncio.sleep(0.5)
                late = []
                while not on_b.frames.empty():
                    late.append(on_b.frames.get_nowait())
                assert [f for f in late if f.get("type") == "console"] == []  # nothing more
            finally:
                await on_b.close()
                await other.close()


async def test_disabling_an_account_closes_its_socket(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    await add_account(desk_gateway, "khoa")
    a = AgentClient(desk_gateway.url)
    try:
        await a.login("khoa", PASSWORD)
        await a.connect()
        await desk_gateway.gw.desk.accounts.set_disabled("khoa")  # straight in SQL (the CLI)
        await _closed(a, timeout=10)  # found by the socket's own re-check
    finally:
        await a.close()


async def test_a_frame_after_a_password_change_is_refused(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    await add_account(desk_gateway, "lam")
    a = AgentClient(desk_gateway.url)
    try:
        await a.login("lam", PASSWORD)
        await a.connect()
        await desk_gateway.gw.desk.accounts.set_password("lam", "another long password")
        await a.send({"type": "watch", "conversation_id": "c-anything"})
        await _closed(a, timeout=3)  # the frame itself is checked
    finally:
        await a.close()
