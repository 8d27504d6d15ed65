"""Redis stays flat however many conversations come and go: the inbox is trimmed once its
entries are acknowledged, and a closed conversation's event stream and bot state expire
(its transcript stays in SQL), while a reopened one keeps its stream."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bot.channels.widget_client import wait_for
from bot.core.vocabulary import State
from tests.support import backend_settings, running_gateway, with_section

N = 2000


async def _keys(redis, prefix: str, pattern: str) -> int:  # type: ignore[no-untyped-def]
    return len([k async for k in redis.scan_iter(f"{prefix}:{pattern}", count=1000)])


async def test_thousands_of_closed_conversations_leave_redis_flat(tmp_path, nlu_url) -> None:  # type: ignore[no-untyped-def]
    async with backend_settings("sqlite", tmp_path, claim_idle_s=1.0) as s:
        s = with_section(s, "redis", closed_ttl_s=2)
        async with running_gateway(s, nlu_url) as g:
            engine, db, redis, prefix = g.gw.engine, g.gw.db, g.gw.redis.client, s.redis.prefix
            inbox = engine.inbox.key
            base = await _keys(redis, prefix, "conv:*")
            for i in range(N):
                customer = await db.get_or_create_customer("widget", f"visitor-{i:05d}")
                conv = await db.create_conversation(customer.id, "widget", "vi")
                await engine.event_log.append(conv.id, {"kind": "state", "state": "BOT"})
                await redis.hset(engine.keys.bot_state(conv.id), "misses", 1)
                await engine.inbox.enqueue(conv.id, 0)  # work the inbox must get through
                await engine.transcript.set_state(conv, State.CLOSED)
            last = engine.keys.events(conv.id)
            assert 0 < await redis.ttl(last) <= 2  # each closed one's keys are on their way out
            # the workers acknowledge every entry; the next trim drops them all
            await wait_for(lambda: _inbox_len(redis, inbox, lambda n: n < 50), timeout=60)
            await asyncio.sleep(2.5)  # the closed conversations' keys run out
            assert await _keys(redis, prefix, "conv:*") <= base + 10


async def _inbox_len(redis, inbox: str, ok) -> bool:  # type: ignore[no-untyped-def]
    return ok(await redis.xlen(inbox))


async def test_a_reopened_conversation_keeps_its_stream(gateway) -> None:  # type: ignore[no-untyped-def]
    from bot.channels.widget_client import WidgetClient

    engine, redis = gateway.gw.engine, gateway.gw.redis.client
    c = WidgetClient(gateway.ws_url)
    try:
        await c.connect()
        await c.say("bảo hành bao lâu vậy shop")
        await c.bot_reply()
        conv = await gateway.gw.db.get_conversation(c.conversation_id)
        await engine.transcript.set_state(conv, State.CLOSED, closed_at=datetime.now(UTC))
        assert await redis.ttl(engine.keys.events(conv.id)) > 0
        await c.say("cho mình hỏi thêm")  # within the reopen window: the same conversation
        await c.bot_reply()
        assert (await gateway.gw.db.get_conversation(conv.id)).state == "BOT"
        assert await redis.ttl(engine.keys.events(conv.id)) == -1  # lives as long as it is open
    finally:
        await c.close()
