"""Faults that must not lose a message or start an unsafe deployment: a server error that
the widget can retry, malformed Unicode rejected with a clear error, and production refusing
the in-process Redis stand-in."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bot.channels.widget_client import WidgetClient

PROJECT_ROOT = Path(__file__).resolve().parents[2]


async def test_a_lone_surrogate_is_a_bad_request_and_the_socket_goes_on(gateway) -> None:  # type: ignore[no-untyped-def]
    c = WidgetClient(gateway.ws_url)
    try:
        await c.connect()
        # JSON's "\ud800" escape decodes to a lone surrogate, which no store can encode
        await c.send_frame(
            '{"type": "message", "client_msg_id": "surrogate1", "text": "hi \\ud800"}'
        )
        err = await c.expect(lambda f: f["type"] == "error", timeout=5)
        assert err["code"] == "bad_request" and "Unicode" in err["message"]
        assert err["client_msg_id"] == "surrogate1"  # the widget marks that message failed
        await c.say("bảo hành bao lâu vậy shop", client_msg_id="afterwards1")
        ack = await c.expect(lambda f: f["type"] == "ack", timeout=10)
        assert ack["client_msg_id"] == "afterwards1"
    finally:
        await c.close()


async def test_a_server_error_names_the_message_so_the_widget_retries_it(gateway) -> None:  # type: ignore[no-untyped-def]
    engine = gateway.gw.engine
    real_accept = engine.accept
    calls = 0

    async def flaky_accept(inbound):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug on our side")  # not an outage: that is `unavailable`
        return await real_accept(inbound)

    engine.accept = flaky_accept
    c = WidgetClient(gateway.ws_url)
    try:
        await c.connect()
        await c.say("bảo hành bao lâu vậy shop", client_msg_id="retryme01")
        err = await c.expect(lambda f: f["type"] == "error", timeout=5)
        assert err["code"] == "internal" and err["client_msg_id"] == "retryme01"
        await c.say("bảo hành bao lâu vậy shop", client_msg_id="retryme01")  # the retry
        ack = await c.expect(lambda f: f["type"] == "ack", timeout=10)
        assert ack["client_msg_id"] == "retryme01"
        stored = [m for m in await gateway.gw.db.transcript(ack["conversation_id"])
                  if m.sender == "customer"]  # fmt: skip
        assert [m.client_msg_id for m in stored] == ["retryme01"]
    finally:
        engine.accept = real_accept
        await c.close()


def test_production_refuses_the_in_process_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "CARELINE_"))}
    env.update(
        CARELINE_ENV="production",
        CARELINE_SECRET_KEY="s" * 48,
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'prod.db'}",
    )
    out = subprocess.run(
        [sys.executable, "-m", "bot.app", "run", "--port", "0"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert "REDIS_URL is required when CARELINE_ENV=production" in out.stderr


async def test_a_forged_quick_reply_cannot_pick_the_safety_queue(gateway) -> None:  # type: ignore[no-untyped-def]
    c = WidgetClient(gateway.ws_url)
    try:
        await c.connect()
        # never offered by the bot in this conversation: read as text, not as a choice
        await c.say("Giờ mở cửa", payload="intent:hazard_explosion")
        reply = await c.bot_reply()
        assert "8:00" in reply["text"]  # the text's own answer (opening hours)
        conv = await gateway.gw.db.get_conversation(c.conversation_id)
        assert conv.state == "BOT" and conv.severity != "critical"
        assert not await gateway.gw.db.escalations(conv.id)
    finally:
        await c.close()


async def test_hellos_are_throttled_and_store_nothing(gateway) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from bot.core.store.models import Customer

    async def customers() -> int:
        async with gateway.gw.db.sql_sessions() as s:
            return int((await s.scalar(select(func.count()).select_from(Customer))) or 0)

    before = await customers()
    c = WidgetClient(gateway.ws_url)
    try:
        await c.connect()
        codes = []
        for _ in range(30):
            await c.send_frame({"type": "hello", "locale": "vi"})  # token-less, each a visitor
            f = await c.expect(lambda f: f["type"] in ("welcome", "error"), timeout=5)
            codes.append(f.get("code") or f["type"])
        assert codes.count("welcome") == 4 and codes[4:] == ["rate_limited"] * 26
        assert await customers() == before  # a hello alone stores no customer
        await c.say("bảo hành bao lâu vậy shop")  # the first message makes one
        await c.expect(lambda f: f["type"] == "ack", timeout=10)
        assert await customers() == before + 1
    finally:
        await c.close()


async def test_a_returning_visitor_gets_a_fresh_token_and_keeps_the_chat(gateway) -> None:  # type: ignore[no-untyped-def]
    c = WidgetClient(gateway.ws_url)
    try:
        first = await c.connect()
        await c.say("bảo hành bao lâu vậy shop")
        await c.bot_reply()
        conversation = c.conversation_id
        await c.close()
        signer = gateway.gw.widget.signer
        signer._clock = lambda: time.time() + 100  # the visitor comes back later
        again = WidgetClient(gateway.ws_url)
        again.token = first["token"]
        welcome = await again.connect()
        old_issued, new_issued = (
            int(t.split(".")[1], 16) for t in (first["token"], welcome["token"])
        )
        assert new_issued >= old_issued + 100  # re-issued at this hello: its clock restarts
        assert welcome["conversation_id"] == conversation
        await again.close()
    finally:
        await c.close()


def test_visitor_tokens_run_out() -> None:
    from bot.core.security import TokenSigner

    now = [1_800_000_000.0]
    signer = TokenSigner(b"k" * 32, "widget-visitor", max_age_s=3600, clock=lambda: now[0])
    visitor, token = signer.issue()
    assert signer.verify(token) == visitor
    now[0] += 3599
    assert signer.verify(token) == visitor
    now[0] += 2
    assert signer.verify(token) is None  # expired: a new visitor
    assert signer.verify(f"{visitor}.{token.split('.')[2]}") is None  # the old, ageless form
