"""A per-conversation Redis lock, so one engine worker (on any replica) handles a
conversation at a time and its messages are answered in order.

The TTL frees the lock when its holder dies (kill -9); while the holder lives, a small task
renews it every third of the TTL, so a turn that takes longer than the TTL (a slow NLU call,
a database failover) is never joined by a second worker. Should the lock be lost anyway (the
holder was frozen past the TTL and someone else took it), the holder's task is cancelled:
its steps are idempotent, and the work is finished by whoever holds the lock now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis

log = logging.getLogger("careline.locks")

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


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
    holder = asyncio.current_task()
    lost, done = asyncio.Event(), asyncio.Event()
    renewer = asyncio.create_task(_renew(redis, key, token, ttl_ms, holder, lost, done))
    try:
        yield
    except asyncio.CancelledError:
        if lost.is_set() and holder is not None and holder.uncancel() == 0:
            raise LockLost(f"{key} was lost while held; its new holder finishes") from None
        raise
    finally:
        # The flag, not only the cancel: a cancel absorbed inside a Redis call (redis-py
        # may swallow one while reconnecting) must not leave the renewer keeping the lock
        # alive for ever after its holder is gone; nor may waiting for it block the release.
        done.set()
        renewer.cancel()
        await asyncio.wait({renewer}, timeout=1.0)
        if not lost.is_set():
            await redis.eval(_RELEASE, 1, key, token)


async def _renew(
    redis: aioredis.Redis, key: str, token: str, ttl_ms: int,
    holder: asyncio.Task[Any] | None, lost: asyncio.Event, done: asyncio.Event,
) -> None:  # fmt: skip
    started, reported = time.monotonic(), False
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), ttl_ms / 3000)
        if done.is_set() or (holder is not None and holder.done()):
            return
        if not reported and time.monotonic() - started > LONG_HOLD_S:
            reported = True  # once: where the holder waits, to find what keeps it
            log.warning("lock %s held for over %.0f s; its holder waits at:\n%s", key,
                        LONG_HOLD_S, _where(holder))  # fmt: skip
        try:
            still_ours = await redis.eval(_RENEW, 1, key, token, ttl_ms)
        except Exception:  # Redis unreachable for a moment: try again next round
            log.warning("could not renew lock %s; retrying", key)
            continue
        if not still_ours:
            log.error("lock %s was lost while held; stopping its holder", key)
            lost.set()
            if holder is not None:
                holder.cancel()
            return
