"""Console sign-in through the gateway's HTTP API: hashing, CSRF, roles, throttling, logout,
and no default credentials in production."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.auth.accounts import Accounts
from bot.auth.bootstrap import ensure_demo_admin
from bot.auth.passwords import verify_password
from bot.channels.widget_client import wait_for
from bot.core.store.db import Database
from handoff.web.agent_client import AgentAPIError, AgentClient
from tests.handoff.conftest import PASSWORD, add_account, desk_settings
from tests.support import backend_settings, running_gateway, tcp_link, with_section


async def test_passwords_are_argon2_hashes(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    await add_account(desk_gateway, "an")
    stored = await desk_gateway.gw.desk.accounts.by_username("AN")  # case-insensitive
    assert stored is not None and stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash


async def test_login_csrf_roles_logout(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    g = desk_gateway
    await add_account(g, "an")
    async with AgentClient(g.url) as a, AgentClient(g.url) as a2:
        with pytest.raises(AgentAPIError) as bad:
            await a.login("an", "wrong password!")
        assert bad.value.status == 401 and bad.value.body["error"]["code"] == "bad_credentials"
        with pytest.raises(AgentAPIError) as anon:
            await a.get("/api/agent/me")
        assert anon.value.status == 401

        await a.login("an", PASSWORD)
        assert (await a.get("/api/agent/me"))["principal"]["username"] == "an"
        # State-changing requests need the session's CSRF token.
        with pytest.raises(AgentAPIError) as no_csrf:
            await a.request("POST", "/api/agent/presence", {"status": "online"}, csrf=False)
        assert no_csrf.value.status == 403 and no_csrf.value.body["error"]["code"] == "csrf"
        a_csrf = a.csrf
        a.csrf = "forged"
        with pytest.raises(AgentAPIError):
            await a.post("/api/agent/presence", {"status": "online"})
        a.csrf = a_csrf
        await a.post("/api/agent/presence", {"status": "online"})
        # An agent is not a supervisor.
        for path in ("/api/supervisor/agents", "/api/supervisor/breaches"):
            with pytest.raises(AgentAPIError) as forbidden:
                await a.get(path)
            assert forbidden.value.status == 403

        # Log out everywhere: the other device's session ends too.
        await a2.login("an", PASSWORD)
        await a.post("/api/auth/logout-all")
        for client in (a, a2):
            with pytest.raises(AgentAPIError) as gone:
                await client.get("/api/agent/me")
            assert gone.value.status == 401


async def test_disabled_account_is_out_at_once(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    await add_account(desk_gateway, "bao")
    async with AgentClient(desk_gateway.url) as a:
        await a.login("bao", PASSWORD)
        await desk_gateway.gw.desk.accounts.set_disabled("bao")
        with pytest.raises(AgentAPIError) as gone:
            await a.get("/api/agent/me")
        assert gone.value.status == 401
        with pytest.raises(AgentAPIError) as refused:
            await a.login("bao", PASSWORD)
        assert refused.value.status == 401


async def test_login_throttled_after_failures(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    await add_account(desk_gateway, "chi")
    limit = desk_gateway.settings.auth.login_max_failures
    async with AgentClient(desk_gateway.url) as a:
        for _ in range(limit):
            with pytest.raises(AgentAPIError) as bad:
                await a.login("chi", "not the password")
            assert bad.value.status == 401
        # Now even the right password waits: guessing gets no further.
        async with a.http.post(
            desk_gateway.url + "/api/auth/login", json={"username": "chi", "password": PASSWORD}
        ) as r:
            assert r.status == 429
            assert int(r.headers["Retry-After"]) > 0
            assert (await r.json())["error"]["code"] == "throttled"


async def test_cross_site_login_and_socket_refused(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    await add_account(desk_gateway, "dung")
    async with AgentClient(desk_gateway.url) as a:
        async with a.http.post(
            desk_gateway.url + "/api/auth/login",
            json={"username": "dung", "password": PASSWORD},
            headers={"Origin": "https://evil.example"},
        ) as r:
            assert r.status == 403
        await a.login("dung", PASSWORD)
        url = desk_gateway.url.replace("http", "ws") + "/ws/agent"
        with pytest.raises(Exception) as refused:
            await a.http.ws_connect(url, headers={"Origin": "https://evil.example"})
        assert "403" in str(refused.value)


async def test_no_default_credentials_in_production(tmp_path, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")
    try:
        await db.migrate()
        accounts = Accounts(db)
        monkeypatch.setenv("CARELINE_ENV", "production")
        await ensure_demo_admin(accounts, settings, public_url="https://example")
        assert await accounts.count() == 0  # production: no account appears by itself
        monkeypatch.delenv("CARELINE_ENV")
        await ensure_demo_admin(accounts, settings, public_url="http://127.0.0.1:8080")
        (admin,) = await accounts.all()  # the embedded demo: one admin, random password
        assert admin.username == "admin" and admin.role == "admin"
        assert not verify_password(admin.password_hash, "admin")
        await ensure_demo_admin(accounts, settings, public_url="http://127.0.0.1:8080")
        assert await accounts.count() == 1  # only ever on an empty install
    finally:
        await db.close()


async def test_password_change_ends_existing_sessions(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    await add_account(desk_gateway, "em")
    async with AgentClient(desk_gateway.url) as a:
        await a.login("em", PASSWORD)
        await a.get("/api/agent/me")
        await desk_gateway.gw.desk.accounts.set_password("em", "a brand new password")
        with pytest.raises(AgentAPIError) as gone:
            await a.get("/api/agent/me")
        assert gone.value.status == 401
        await a.login("em", "a brand new password")  # a fresh sign-in works
        assert (await a.get("/api/agent/me"))["principal"]["username"] == "em"


async def test_open_console_socket_ends_with_the_session(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    await add_account(desk_gateway, "giang")
    async with AgentClient(desk_gateway.url) as a:
        await a.login("giang", PASSWORD)
        await a.connect()
        await a.send({"type": "heartbeat"})
        await a.send({"type": "ping"})
        await a.next_frame(lambda f: f["type"] == "pong")  # heartbeat accepted silently
        await a.post("/api/auth/logout-all")
        await a.send({"type": "heartbeat"})
        ended = await a.next_frame(lambda f: f["type"] == "error")
        assert ended["code"] == "unauthenticated"
        ws = a.ws
        assert ws is not None
        await wait_for(lambda: ws.closed)  # the server closes the socket
        assert ws.close_code == 4401


async def test_an_unreachable_database_is_not_a_failed_login(tmp_path: Path, nlu_url: str) -> None:
    """While the account store cannot be reached, a sign-in answers 503 (try again), not a
    500, and is not counted as a failed login: after the outage the agent signs in at once
    instead of being locked out for the throttle's window."""
    async with (
        backend_settings("postgresql", tmp_path) as s,
        tcp_link("127.0.0.1", 5432) as link,
    ):
        through_link = s.database.url.replace("127.0.0.1:5432", f"127.0.0.1:{link.port}")
        s = with_section(s, "database", url=through_link)
        async with running_gateway(desk_settings(s), nlu_url) as g:
            await add_account(g, "an")
            limit = g.settings.auth.login_max_failures
            await link.cut()
            async with AgentClient(g.url) as a:
                for _ in range(limit + 2):
                    with pytest.raises(AgentAPIError) as down:
                        await a.login("an", PASSWORD)
                    assert down.value.status == 503
                    assert down.value.body["error"]["code"] == "unavailable"
                await link.restore()
                await a.login("an", PASSWORD)  # not throttled: no verdict was ever reached
                assert (await a.get("/api/agent/me"))["principal"]["username"] == "an"


async def test_api_calls_during_a_database_outage_answer_503(tmp_path: Path, nlu_url: str) -> None:
    """A signed-in console's API calls that need the database answer 503 'unavailable' with
    Retry-After while it is out (a JSON error the console can retry), and work again after."""
    async with (
        backend_settings("postgresql", tmp_path) as s,
        tcp_link("127.0.0.1", 5432) as link,
    ):
        through_link = s.database.url.replace("127.0.0.1:5432", f"127.0.0.1:{link.port}")
        s = with_section(s, "database", url=through_link)
        async with running_gateway(desk_settings(s), nlu_url) as g, AgentClient(g.url) as a:
            await add_account(g, "an")
            await a.login("an", PASSWORD)
            await link.cut()
            with pytest.raises(AgentAPIError) as down:
                await a.get("/api/agent/me")
            assert down.value.status == 503 and down.value.body["error"]["code"] == "unavailable"
            await link.restore()
            assert (await a.get("/api/agent/me"))["principal"]["username"] == "an"
