"""Flood control: a token bucket per connection (in memory) and a per-sender window shared
by all replicas (in Redis); a sender is a visitor's address or a Telegram chat."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from bot.core.live.keys import Keys
from bot.core.live.lua import LuaScript

_WINDOW = LuaScript("""
local n = redis.call('incr', KEYS[1])
if n == 1 then redis.call('pexpire', KEYS[1], ARGV[1]) end
return {n, redis.call('pttl', KEYS[1])}
""")


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0.0 if allowed (a token is spent), else seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


async def rate_window(
    redis: aioredis.Redis, keys: Keys, sender: str, limit: int, window_s: int = 60
) -> float:
    """0.0 if `sender` is under `limit` messages in its window, else seconds to wait.

    The window opens at the sender's first message and lasts `window_s`, rather than
    following the wall clock's minutes: a burst that straddles a minute boundary is not
    counted afresh half-way, and the wait told to the sender is when its window ends."""
    key = keys.rate_window(sender, window_s)
    n, ttl_ms = await _WINDOW(redis, [key], [window_s * 1000])
    return 0.0 if int(n) <= limit else max(0.001, int(ttl_ms) / 1000)
