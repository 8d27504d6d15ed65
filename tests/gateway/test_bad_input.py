"""Hostile and broken input on the widget socket: a clear error frame, and the connection
stays usable where that makes sense. Nothing here is stored."""

from __future__ import annotations

import json

import aiohttp
import pytest

from bot.channels.widget_client import WidgetClient, wait_for
from tests.support import BACKENDS, backend_settings, running_gateway, with_section


async def _still_usable(c: WidgetClient) -> None:
    await c.send_frame({"type": "ping"})
    await c.expect(lambda f: f["type"] == "pong", timeout=5)


async def _error(c: WidgetClient, frame) -> dict:  # type: ignore[no-untyped-def]
    await c.send_frame(frame)
    return await c.expect(lambda f: f["type"] == "error", timeout=5)


async def test_malformed_frames_get_clear_errors_and_the_socket_survives(gateway) -> None:  # type: ignore[no-untyped-def]
    c = WidgetClient(gateway.ws_url)
    try:
        await c.connect()
        limit = gateway.settings.widget.max_text_chars
        cases = [
            ("{not json", "invalid_json"),
            ("[1, 2]", "invalid_json"),
            (b"\x00\x01binary", "binary_not_supported"),
            ({"type": "shout"}, "unknown_type"),
            ({"no": "type"}, "unknown_type"),
            ({"type": "message", "text": "hi"}, "bad_request"),  # no client_msg_id
            ({"type": "message", "client_msg_id": "../../etc", "text": "hi"}, "bad_request"),
            ({"type": "message", "client_msg_id": "abcdefgh1", "text": 42}, "bad_request"),
            ({"type": "message", "client_msg_id": "abcdefgh2", "text": "x" * (limit + 1)},
             "text_too_long"),
            ({"type": "message", "client_msg_id": "abcdefgh3", "text": "\x00\x07\x1b  "},
             "empty_text"),
            ({"type": "quick_reply", "client_msg_id": "abcdefgh4", "text": "x"}, "bad_request"),
            ("x" * (gateway.settings.widget.max_frame_bytes + 1), "frame_too_large"),
        ]  # fmt: skip
        for frame, code in cases:
            err = await _error(c, frame)
            assert err["code"] == code, (frame, err)
            assert err["message"]
            await _still_usable(c)
        assert c.conversation_id is None  # none of it created a conversation
    finally:
        await c.close()


async def test_hello_is_required_first(gateway) -> None:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as s, s.ws_connect(gateway.ws_url) as ws:
        await ws.send_str(
            json.dumps({"type": "message", "client_msg_id": "abcdefgh", "text": "hi"})
        )
        err = await ws.receive_json(timeout=5)
        assert err["code"] == "hello_required"


async def test_control_characters_are_removed_and_text_is_never_html(gateway) -> None:  # type: ignore[no-untyped-def]
    c = WidgetClient(gateway.ws_url)
    try:
        await c.connect()
        await c.say("a\x00b\x1b[31mc <script>alert(1)</script>\nline2")
        echo = await c.expect(lambda f: f["type"] == "event" and f["event"]["kind"] == "message")
        # stored and echoed as plain text: controls gone, markup untouched (the client
        # renders it with textContent), newline kept
        assert echo["event"]["message"]["text"] == "ab[31mc <script>alert(1)</script>\nline2"
    finally:
        await c.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_flood_is_rate_limited_with_retry_after(backend, tmp_path, nlu_url) -> None:  # type: ignore[no-untyped-def]
    # A refill so slow that how fast this machine happens to be cannot matter.
    async with backend_settings(backend, tmp_path) as s:
        s = with_section(s, "widget", rate_per_connection=0.001)
        async with running_gateway(s, nlu_url) as gateway:
            burst = s.widget.burst_per_connection
            c = WidgetClient(gateway.ws_url)
            try:
                await c.connect()
                for i in range(burst + 3):
                    await c.say(f"tin nhắn số {i}")
                err = await c.expect(lambda f: f["type"] == "error", timeout=10)
                assert err["code"] == "rate_limited" and err["retry_after"] > 0
                assert err["client_msg_id"]  # tells the widget which message to re-send later
                await _still_usable(c)
                acks = [f for f in c.frames if f["type"] == "ack"]
                assert len(acks) == burst
            finally:
                await c.close()


@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
async def test_foreign_origin_is_refused(gateway, origin: str) -> None:  # type: ignore[no-untyped-def]
    c = WidgetClient(gateway.ws_url, origin=origin)
    try:
        err = await c.connect()
        assert err["type"] == "error" and err["code"] == "origin_not_allowed"
        with pytest.raises(ConnectionError):
            await c.recv(timeout=5)
    finally:
        await c.close()


async def test_own_origin_is_allowed(gateway) -> None:  # type: ignore[no-untyped-def]
    c = WidgetClient(gateway.ws_url, origin=gateway.url)
    try:
        assert (await c.connect())["type"] == "welcome"
    finally:
        await c.close()


async def test_text_the_nlu_refuses_is_answered_not_stuck(tmp_path, nlu_url) -> None:  # type: ignore[no-untyped-def]
    """A channel allowing longer text than the NLU accepts: the NLU's 4xx is a miss (the
    customer gets an answer), not a message stuck in the inbox forever."""
    async with backend_settings("sqlite", tmp_path) as s:
        s = with_section(s, "widget", max_text_chars=10_000, max_frame_bytes=64_000)
        assert s.nlu.max_text_chars < 5000
        async with running_gateway(s, nlu_url) as gateway:
            c = WidgetClient(gateway.ws_url)
            try:
                await c.connect()
                await c.say("máy mình bị lỗi " * 400)  # ~6,400 characters
                reply = await c.bot_reply(timeout=20)
                assert reply["sender"] == "bot" and reply["text"]
                db, cid = gateway.gw.db, c.conversation_id
                assert await wait_for(lambda: _all_processed(db, cid))
            finally:
                await c.close()


async def _all_processed(db, cid: str) -> bool:  # type: ignore[no-untyped-def]
    return all(m.processed_at for m in await db.transcript(cid) if m.sender == "customer")
