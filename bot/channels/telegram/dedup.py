"""Telegram update deduplication in Redis, by update_id.

Telegram re-sends a webhook update until it gets a 2xx, and any replica may receive the
retry. An update is claimed as `pending` (short TTL) while it is processed and becomes `done`
(long TTL) only once its message is stored; on failure the claim is dropped, so Telegram's
retry is processed. A retry that arrives while the first attempt is still running is told to
come back later rather than acknowledged: if that first attempt dies, nothing is lost.
SQL idempotency (client_msg_id) remains the last line: even a forgotten update_id stores
nothing twice.
"""

from __future__ import annotations

from enum import StrEnum

import redis.asyncio as aioredis

PENDING_TTL_S = 120


class Claim(StrEnum):
    NEW = "new"  # process it
    DONE = "done"  # already processed: acknowledge, do nothing
    BUSY = "busy"  # being processed right now elsewhere: ask Telegram to retry later


class UpdateDedup:
    def __init__(self, redis: aioredis.Redis, prefix: str, *, done_ttl_s: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.done_ttl_s = done_ttl_s

    def key(self, update_id: int) -> str:
        return f"{self.prefix}:update:{update_id}"

    async def claim(self, update_id: int) -> Claim:
        key = self.key(update_id)
        if await self.redis.set(key, "pending", nx=True, ex=PENDING_TTL_S):
            return Claim.NEW
        return Claim.DONE if await self.redis.get(key) == "done" else Claim.BUSY

    async def done(self, update_id: int) -> None:
        await self.redis.set(self.key(update_id), "done", ex=self.done_ttl_s)

    async def release(self, update_id: int) -> None:
        await self.redis.delete(self.key(update_id))
