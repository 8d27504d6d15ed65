"""A per-conversation Redis lock, so one engine worker (on any replica) handles a
conversation at a time and its messages are answered in order."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class LockTimeout(TimeoutError):
    pass


@asynccontextmanager
async def redis_lock(
    redis: aioredis.Redis, key: str, *, ttl_ms: int = 10_000, wait_s: float = 30.0
) -> AsyncIterator[None]:
    """Hold `key` exclusively. The TTL frees it if the holder dies (kill -9)."""
    token = secrets.token_hex(8)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while not await redis.set(key, token, nx=True, px=ttl_ms):
        if loop.time() > deadline:
            raise LockTimeout(f"{key} is busy")
        await asyncio.sleep(0.02)
    try:
        yield
    finally:
        await redis.eval(_RELEASE, 1, key, token)
