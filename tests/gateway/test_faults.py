"""Faults that must not lose a message or start an unsafe deployment: a server error that
the widget can retry, malformed Unicode rejected with a clear error, and production refusing
the in-process Redis stand-in."""

from __future__ import annotations

import os
import subprocess
import sys
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
            raise ConnectionError("the database went away for a moment")
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
        [sys.executable, "-m", "bot.cli", "run", "--port", "0"],
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
