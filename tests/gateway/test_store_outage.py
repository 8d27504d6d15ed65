"""The widget while the database (or Redis) is out: a message is refused as `unavailable` with
retry_after and its client_msg_id (the widget keeps it and sends it again), and the same
message is stored once when the database is back. The gateway reaches PostgreSQL through a
TCP link the test cuts, so the shared server is never touched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import WSCloseCode

from bot.channels.widget_client import WidgetClient
from tests.support import (
    RunningGateway,
    TcpLink,
    backend_settings,
    own_redis,
    running_gateway,
    tcp_link,
    with_section,
)


@pytest.fixture
async def linked_gateway(
    tmp_path: Path, nlu_url: str
) -> AsyncIterator[tuple[RunningGateway, TcpLink]]:
    async with (
        backend_settings("postgresql", tmp_path) as s,
        tcp_link("127.0.0.1", 5432) as link,
    ):
        through_link = s.database.url.replace("127.0.0.1:5432", f"127.0.0.1:{link.port}")
        async with running_gateway(with_section(s, "database", url=through_link), nlu_url) as g:
            yield g, link


async def test_a_message_during_an_outage_is_refused_for_a_retry_and_stored_once(
    linked_gateway: tuple[RunningGateway, TcpLink],
) -> None:
    g, link = linked_gateway
    c = WidgetClient(g.ws_url)
    try:
        assert (await c.connect())["type"] == "welcome"
        await link.cut()
        for _ in range(3):  # as long as it lasts: the same answer each time, never a give-up
            await c.say("bảo hành bao lâu vậy shop", client_msg_id="outage0001")
            err = await c.expect(lambda f: f["type"] == "error", timeout=10)
            assert err["code"] == "unavailable", err
            assert err["client_msg_id"] == "outage0001" and err["retry_after"] > 0
            c.frames.clear()
        await link.restore()
        for _ in range(5):  # the widget's retries: a connection that died in the outage
            await c.say("bảo hành bao lâu vậy shop", client_msg_id="outage0001")
            got = await c.expect(lambda f: f["type"] in ("ack", "error"), timeout=15)
            if got["type"] == "ack":
                break
            assert got["code"] == "unavailable", got
            c.frames.clear()
        ack = got
        assert ack["type"] == "ack", ack
        assert ack["client_msg_id"] == "outage0001"
        await c.bot_reply()
        stored = [m for m in await g.gw.db.transcript(ack["conversation_id"])
                  if m.sender == "customer"]  # fmt: skip
        assert [m.client_msg_id for m in stored] == ["outage0001"]
    finally:
        await c.close()


async def test_a_hello_during_an_outage_closes_the_socket_to_start_over(
    linked_gateway: tuple[RunningGateway, TcpLink],
) -> None:
    g, link = linked_gateway
    c, new = WidgetClient(g.ws_url), WidgetClient(g.ws_url)
    try:
        assert (await c.connect())["type"] == "welcome"
        await c.drop()
        await link.cut()
        err = await c.connect()  # a returning visitor: the hello looks up their chat
        assert err["type"] == "error" and err["code"] == "unavailable", err
        assert await c.closed_by_server() == WSCloseCode.TRY_AGAIN_LATER
        # A visitor made up by this hello has no chat to look up: welcome, database or not.
        assert (await new.connect())["type"] == "welcome"
        await link.restore()
        assert (await c.connect())["type"] == "welcome"  # a new socket, once it is back
    finally:
        await c.close()
        await new.close()


async def test_a_message_while_redis_is_down_is_refused_for_a_retry_and_stored_once(
    tmp_path: Path, nlu_url: str
) -> None:
    async with own_redis() as server, backend_settings("postgresql", tmp_path) as s:
        s = with_section(s, "redis", url=server.url)
        async with running_gateway(s, nlu_url) as g:
            c = WidgetClient(g.ws_url)
            try:
                assert (await c.connect())["type"] == "welcome"
                server.stop()
                await c.say("đổi trả trong bao nhiêu ngày", client_msg_id="redisdown01")
                err = await c.expect(lambda f: f["type"] in ("ack", "error"), timeout=30)
                assert err["type"] == "error" and err["code"] == "unavailable", err
                assert err["client_msg_id"] == "redisdown01" and err["retry_after"] > 0
                await server.start()
                for _ in range(10):  # the widget's retries, until Redis answers again
                    c.frames.clear()
                    await c.say("đổi trả trong bao nhiêu ngày", client_msg_id="redisdown01")
                    got = await c.expect(lambda f: f["type"] in ("ack", "error"), timeout=30)
                    if got["type"] == "ack":
                        break
                    assert got["code"] == "unavailable", got
                    await asyncio.sleep(got["retry_after"])
                assert got["type"] == "ack", got
                stored = await g.gw.db.transcript(got["conversation_id"])
                assert [m.client_msg_id for m in stored if m.sender == "customer"] == [
                    "redisdown01"
                ]
            finally:
                await c.close()
