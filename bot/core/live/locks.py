"""A per-conversation Redis lock, so one engine worker (on any replica) handles a
conversation at a time and its messages are answered in order.

The TTL frees the lock when its holder dies (kill -9); while the holder lives, a timer
renews it every third of the TTL, so a turn that takes longer than the TTL (a slow NLU call,
a database failover) is never joined by a second worker. Should the lock be lost anyway (the
holder was frozen past the TTL and someone else took it), the holder's task is cancelled:
its steps are idempotent, and the work is finished by whoever holds the lock now.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis

from bot.core.live.lua import LuaScript

log = logging.getLogger("careline.locks")

_RELEASE = LuaScript("""
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
""")

_RENEW = LuaScript("""
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
""")


LONG_HOLD_S = 60.0  # a turn holds its conversation for milliseconds; a minute is a fault


def _where(task: asyncio.Task[Any] | None) -> str:
    """The chain of awaits the task is suspended in, outermost first."""
    if task is None:
        return "(no task)"
    lines: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(lines) < 40:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
        if frame is not None:
            lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        nxt = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
        if nxt is None and frame is None:
            lines.append(f"  awaiting {awaited!r}"[:200])
        awaited = nxt
    return "\n".join(lines)


class LockTimeout(TimeoutError):
    pass


class LockLost(RuntimeError):
    """The lock expired under its holder and was taken by another."""


@asynccontextmanager
async def redis_lock(
    redis: aioredis.Redis, key: str, *, ttl_ms: int = 10_000, wait_s: float = 30.0
) -> AsyncIterator[None]:
    """Hold `key` exclusively, renewing it while held."""
    token = secrets.token_hex(8)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while not await redis.set(key, token, nx=True, px=ttl_ms):
        if loop.time() > deadline:
            raise LockTimeout(f"{key} is busy")
        await asyncio.sleep(0.02)
    renewal = _Renewal(redis, key, token, ttl_ms, asyncio.current_task())
    try:
        yield
    except asyncio.CancelledError:
        holder = renewal.holder
        if renewal.lost and holder is not None and holder.uncancel() == 0:
            raise LockLost(f"{key} was lost while held; its new holder finishes") from None
        raise
    finally:
        await renewal.stop()
        if not renewal.lost:
            await _RELEASE(redis, [key], [token])


class _Renewal:
    """Keeps a held lock alive: a timer every third of the TTL, which starts a renewal only
    when it fires (a turn of milliseconds is over long before), rather than a task per lock.

    Stopping it sets a flag as well as cancelling: a cancel absorbed inside a Redis call
    (redis-py may swallow one while reconnecting) must not leave a renewal keeping the lock
    alive after its holder is gone; nor may waiting for one block the release."""

    def __init__(
        self, redis: aioredis.Redis, key: str, token: str, ttl_ms: int,
        holder: asyncio.Task[Any] | None,
    ) -> None:  # fmt: skip
        self.redis, self.key, self.token, self.ttl_ms = redis, key, token, ttl_ms
        self.holder = holder
        self.lost = False
        self._done = False
        self._started = time.monotonic()
        self._reported = False
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self._timer = self._loop.call_later(ttl_ms / 3000, self._fire)

    def _fire(self) -> None:
        if not self._done:
            self._task = self._loop.create_task(self._renew())

    async def _renew(self) -> None:
        holder = self.holder
        if self._done or (holder is not None and holder.done()):
            return
        if not self._reported and time.monotonic() - self._started > LONG_HOLD_S:
            self._reported = True  # once: where the holder waits, to find what keeps it
            log.warning("lock %s held for over %.0f s; its holder waits at:\n%s", self.key,
                        LONG_HOLD_S, _where(holder))  # fmt: skip
        try:
            still_ours = await _RENEW(self.redis, [self.key], [self.token, self.ttl_ms])
        except Exception:  # Redis unreachable for a moment: try again next round
            log.warning("could not renew lock %s; retrying", self.key)
            still_ours = True
        if self._done:
            return
        if not still_ours:
            log.error("lock %s was lost while held; stopping its holder", self.key)
            self.lost = True
            if holder is not None:
                holder.cancel()
            return
        self._timer = self._loop.call_later(self.ttl_ms / 3000, self._fire)

    async def stop(self) -> None:
        self._done = True
        self._timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=1.0)
