"""First-response SLA timers in Redis: started at escalation, stopped by the first human reply.

Deadlines live in Redis, not in a replica's memory, so a gateway restart loses none: any
replica's watcher finds them. Each breach fires exactly once:

    {p}:sla          ZSET  conversation -> deadline (epoch s)
    {p}:sla:firing   ZSET  conversation -> when a watcher took it (crash recovery)
    {p}:sla:{id}     HASH  severity, queue, started

`take_due` moves due timers from `sla` to `firing` in one Lua step, so two replicas never
take the same one. A watcher that dies between taking and finishing leaves the entry in
`firing`; after `retake_after_s` another watcher takes it again, and the SQL record is
written only if the conversation has none yet (`Breaches.record`), so a retry is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from bot.core.live.keys import Keys
from bot.core.metrics import SLA_WAITING

log = logging.getLogger("careline.sla")

_TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], ARGV[1], id)
end
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(stale) do
  redis.call('ZADD', KEYS[2], ARGV[1], id)
  table.insert(due, id)
end
return due
"""


@dataclass(frozen=True)
class DueTimer:
    conversation_id: str
    severity: str
    queue: str
    started: float


class SlaTimers:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        deadlines_s: dict[str, float],
        *,
        retake_after_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.deadlines_s = deadlines_s
        self.retake_after_s = retake_after_s
        self.clock = clock
        self._take = redis.register_script(_TAKE_DUE)

    @property
    def _timers(self) -> str:
        return self.keys.sla_timers

    @property
    def _firing(self) -> str:
        return self.keys.sla_firing

    def _meta(self, conversation_id: str) -> str:
        return self.keys.sla_timer(conversation_id)

    async def start(self, conversation_id: str, severity: str, queue: str) -> float:
        """Start the clock (a no-op if it already runs: a re-escalation keeps its deadline).
        Returns the deadline."""
        return await self._begin(conversation_id, severity, queue, self.clock())

    async def restore(
        self, conversation_id: str, severity: str, queue: str, started: float
    ) -> float:
        """Put back a clock Redis lost, from when the escalation really started (so the
        deadline is the original one, possibly already past: then it fires). A clock that
        still runs is kept. Returns the deadline."""
        return await self._begin(conversation_id, severity, queue, started)

    async def _begin(
        self, conversation_id: str, severity: str, queue: str, started: float
    ) -> float:
        deadline = started + self.deadlines_s.get(severity, self.deadlines_s["normal"])
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self._timers, {conversation_id: deadline}, nx=True)
            pipe.hsetnx(self._meta(conversation_id), "severity", severity)
            pipe.hsetnx(self._meta(conversation_id), "queue", queue)
            pipe.hsetnx(self._meta(conversation_id), "started", str(started))
            pipe.zscore(self._timers, conversation_id)
            *_, score = await pipe.execute()
        return float(score) if score is not None else deadline

    async def tighten(self, conversation_id: str, severity: str) -> None:
        """The severity rose while waiting: the stricter deadline applies (never a later one)."""
        started = await self.redis.hget(self._meta(conversation_id), "started")
        if started is None:
            return
        deadline = float(started) + self.deadlines_s[severity]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self._timers, {conversation_id: deadline}, xx=True, lt=True)
            pipe.hset(self._meta(conversation_id), "severity", severity)
            await pipe.execute()

    async def stop(self, conversation_id: str) -> None:
        """A person answered (or the chat ended): no breach can fire any more."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._timers, conversation_id)
            pipe.zrem(self._firing, conversation_id)
            pipe.delete(self._meta(conversation_id))
            await pipe.execute()

    async def deadline(self, conversation_id: str) -> float | None:
        score = await self.redis.zscore(self._timers, conversation_id)
        return float(score) if score is not None else None

    async def deadlines(self, conversation_ids: list[str]) -> dict[str, float]:
        if not conversation_ids:
            return {}
        scores = await self.redis.zmscore(self._timers, conversation_ids)
        return {c: float(s) for c, s in zip(conversation_ids, scores, strict=True) if s is not None}

    async def running(self) -> int:
        return int(await self.redis.zcard(self._timers))

    async def take_due(self, limit: int = 100) -> list[DueTimer]:
        now = self.clock()
        ids = await self._take(
            keys=[self._timers, self._firing], args=[now, now - self.retake_after_s, limit]
        )
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.hgetall(self._meta(cid))
            metas = await pipe.execute()
        return [
            DueTimer(
                cid, m.get("severity", "normal"), m.get("queue", ""), float(m.get("started", 0))
            )
            for cid, m in zip(ids, metas, strict=True)
        ]

    async def done(self, conversation_id: str) -> None:
        """The breach is recorded and announced."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._firing, conversation_id)
            pipe.delete(self._meta(conversation_id))
            await pipe.execute()


class SlaWatcher:
    """Each replica runs one: takes due timers and hands them to `on_breach`; also runs the
    help desk's periodic `tick` (assignment retries)."""

    def __init__(
        self,
        timers: SlaTimers,
        on_breach: Callable[[DueTimer], Awaitable[None]],
        *,
        every_s: float,
        tick: Callable[[], Awaitable[None]] | None = None,
        tick_every_s: float = 5.0,
    ) -> None:
        self.timers = timers
        self.on_breach = on_breach
        self.tick = tick
        self.tick_every_s = tick_every_s
        self._last_tick = 0.0
        self.every_s = every_s
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                for due in await self.timers.take_due():
                    await self.on_breach(due)
                    await self.timers.done(due.conversation_id)
                SLA_WAITING.set(await self.timers.running())
                if self.tick and time.monotonic() - self._last_tick >= self.tick_every_s:
                    self._last_tick = time.monotonic()
                    await self.tick()
            except Exception:  # Redis or SQL hiccup: the timers are still there next round
                log.exception("SLA check failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.every_s)

    def stop(self) -> None:
        self._stopping.set()
