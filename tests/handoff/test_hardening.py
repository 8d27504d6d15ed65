"""Small holes an attacker or an operator found, each closed: non-ASCII tokens compared as
bytes (no 500, no traceback per frame), a junk event cursor refused without killing the
agent socket, an export range checked before the first byte, and the export's audit line
naming who exported."""

from __future__ import annotations

import logging

from bot.channels.widget_client import WidgetClient
from handoff.web.agent_client import AgentClient
from tests.handoff.conftest import PASSWORD, add_account


async def _agent(g, username: str, role: str = "agent") -> AgentClient:  # type: ignore[no-untyped-def]
    await add_account(g, username, role=role)
    a = AgentClient(g.url)
    await a.login(username, PASSWORD)
    return a


async def test_a_non_ascii_csrf_token_is_refused_not_a_crash(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    a = await _agent(desk_gateway, "khanh")
    try:
        async with a.http.post(
            desk_gateway.url + "/api/agent/presence",
            json={"status": "online"},
            headers={"X-CSRF-Token": "tôken-với-dấu"},
        ) as r:
            assert r.status == 403
            assert (await r.json())["error"]["code"] == "csrf"
    finally:
        await a.close()


async def test_a_non_ascii_visitor_token_gets_a_fresh_visitor(desk_gateway, caplog) -> None:  # type: ignore[no-untyped-def]
    forged = "abcdefghijklmnopqrstuvwx.mâc-giả-mạo"  # a forged MAC with accents
    c = WidgetClient(desk_gateway.ws_url)
    c.token = forged
    try:
        with caplog.at_level(logging.ERROR):
            welcome = await c.connect()
        assert welcome["type"] == "welcome", welcome
        assert welcome["token"] and welcome["token"] != forged
        assert "widget frame failed" not in caplog.text
    finally:
        await c.close()


async def test_a_junk_cursor_is_refused_and_the_socket_lives(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    a = await _agent(desk_gateway, "linh")
    try:
        await a.connect()
        await a.send({"type": "watch", "conversation_id": "c-anything", "after": "../../junk"})
        err = await a.next_frame(lambda f: f["type"] == "error")
        assert err["code"] == "bad_request" and "event id" in err["message"]
        await a.send({"type": "ping"})
        assert (await a.next_frame(lambda f: f["type"] == "pong"))["type"] == "pong"
    finally:
        await a.close()


async def test_an_export_range_out_of_bounds_is_a_400_before_any_byte(desk_gateway, caplog) -> None:  # type: ignore[no-untyped-def]
    m = await _agent(desk_gateway, "mai", role="manager")
    try:
        url = desk_gateway.url + "/api/reports/surveys/export?format=csv"
        async with m.http.get(url + "&from=9999-12-01&to=9999-12-31") as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "bad_scope"
        with caplog.at_level(logging.INFO, logger="careline"):
            async with m.http.get(url + "&from=2026-03-10&to=2026-03-12") as r:
                assert r.status == 200
                await r.read()
        assert "by mai" in caplog.text and "by ?" not in caplog.text
    finally:
        await m.close()


async def test_static_pages_get_a_content_security_policy(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for page in ("console.html", "supervisor.html", "dashboard.html", "login.html"):
            async with http.get(f"{desk_gateway.url}/static/{page}") as r:
                assert r.status == 200, page
                csp = r.headers.get("Content-Security-Policy", "")
                assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, page
