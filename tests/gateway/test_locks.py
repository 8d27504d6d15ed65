"""The conversation lock outlives a slow turn (it is renewed while held), and a holder whose
lock was taken from it stops instead of writing beside the new holder."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from bot.core.live.locks import LockLost, LockTimeout, redis_lock


async def test_a_turn_longer_than_the_ttl_keeps_the_lock(redis_client) -> None:  # type: ignore[no-untyped-def]
    key = f"t-lock:{uuid.uuid4().hex}"
    async with redis_lock(redis_client, key, ttl_ms=300):
        await asyncio.sleep(1.0)  # three TTLs
        with pytest.raises(LockTimeout):
            async with redis_lock(redis_client, key, ttl_ms=300, wait_s=0.3):
                pass  # a second worker must not get in
    async with redis_lock(redis_client, key, ttl_ms=300, wait_s=0.5):
        pass  # released at the end


async def test_a_holder_that_lost_its_lock_is_stopped(redis_client) -> None:  # type: ignore[no-untyped-def]
    key = f"t-lock:{uuid.uuid4().hex}"
    wrote_after = False

    async def slow_turn() -> None:
        nonlocal wrote_after
        async with redis_lock(redis_client, key, ttl_ms=300):
            await redis_client.set(key, "someone-else", px=5000)  # the lock is taken over
            await asyncio.sleep(1.0)
            wrote_after = True  # must never run

    with pytest.raises(LockLost):
        await slow_turn()
    assert not wrote_after
    assert await redis_client.get(key) == "someone-else"  # the new holder's lock is kept
    await redis_client.delete(key)
