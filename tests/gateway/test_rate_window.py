"""The per-sender window shared by replicas (widget addresses, Telegram chats)."""

from __future__ import annotations

import asyncio
import time
import uuid

import redis.asyncio as aioredis

from bot.core.live.keys import Keys
from bot.core.live.ratelimit import rate_window


async def test_a_burst_across_a_clock_boundary_is_one_window(
    redis_client: aioredis.Redis,
) -> None:
    keys, sender, window_s = Keys(f"t{uuid.uuid4().hex[:8]}"), "203.0.113.9", 2
    # Start 0.15 s before the wall clock crosses a multiple of the window...
    await asyncio.sleep((window_s - time.time() % window_s - 0.15) % window_s)
    assert [await rate_window(redis_client, keys, sender, 2, window_s) for _ in range(2)] == [
        0.0,
        0.0,
    ]
    await asyncio.sleep(0.3)  # ...and go on after it
    wait = await rate_window(redis_client, keys, sender, 2, window_s)
    assert 0 < wait <= window_s - 0.2  # still over: the window began at the first message
    await asyncio.sleep(wait + 0.05)
    assert await rate_window(redis_client, keys, sender, 2, window_s) == 0.0  # it ends when told
