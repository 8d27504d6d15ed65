"""Periodic survey housekeeping, on every replica (all steps are idempotent under the
conversation lock, so replicas sweeping at once only repeat no-ops):

- surveys nobody answered within `surveys.expiry_hours` are closed as expired;
- a chat with the bot that went silent for `surveys.idle_close_minutes` is resolved like an
  ended one (so bot-only conversations get their survey and count in the reports).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

import redis.asyncio as aioredis

from bot.core.live.keys import Keys
from bot.core.live.locks import LockTimeout, redis_lock
from bot.core.store.models import utcnow
from surveys.flow import SurveyFlow
from surveys.metrics import IDLE_RESOLVED

log = logging.getLogger("careline.surveys")


class SurveySweeper:
    def __init__(
        self, flow: SurveyFlow, end: Callable[[str], Awaitable[None]], redis: aioredis.Redis,
        keys: Keys,
    ) -> None:  # fmt: skip
        self.flow = flow
        self.end = end  # the core's end(): resolves an idle chat like any other close
        self.redis = redis
        self.keys = keys
        self.cfg = self.flow.cfg
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("survey sweep failed; retrying next period")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.cfg.sweep_every_s)

    def stop(self) -> None:
        self._stopping.set()

    async def sweep(self) -> tuple[int, int]:
        """One pass; returns (surveys expired, idle chats resolved) candidates handled."""
        now = utcnow()
        expired = await self.flow.store.due_to_expire(now)
        for conversation_id in expired:
            await self._locked(conversation_id, self.flow.expire)
        idle: list[str] = []
        if self.cfg.idle_close_minutes > 0:
            cutoff = now - timedelta(minutes=self.cfg.idle_close_minutes)
            idle = await self.flow.store.idle_bot_conversations(cutoff)
            for conversation_id in idle:
                log.info("resolving a silent bot chat", extra={"conversation_id": conversation_id})
                try:
                    await self.end(conversation_id)
                    IDLE_RESOLVED.inc()
                except LockTimeout:
                    pass  # busy means not idle after all; the next sweep looks again
        return len(expired), len(idle)

    async def _locked(self, conversation_id: str, fn: Callable[[str], Awaitable[object]]) -> None:
        try:
            async with redis_lock(self.redis, self.keys.conversation_lock(conversation_id)):
                await fn(conversation_id)
        except LockTimeout:
            pass
