"""Wake-ups for push channels: "conversation X has new output for its customer".

The widget pulls: it reads the conversation's event stream itself. Channels that must *push*
to an outside API (Telegram) register here; for them every new customer-visible message adds
the conversation id to a durable Redis stream, `<prefix>:outbox:<channel>`, which that
channel's sender consumes. The engine calls `notify()` for every conversation alike and never
needs to know which channels push: that keeps channel logic out of the engine.

The SQL transcript stays the source of truth: a sender delivers the stored messages it has
not delivered yet, so a lost or repeated wake-up costs a delay or a no-op, never a message.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from bot.core.live.keys import Keys


class Outbound:
    def __init__(self, redis: aioredis.Redis, keys: Keys, *, maxlen: int = 100_000) -> None:
        self.redis = redis
        self.keys = keys
        self.maxlen = maxlen
        self._push: set[str] = set()

    def register(self, channel: str) -> None:
        """Called by a push channel at startup."""
        self._push.add(channel)

    @property
    def push_channels(self) -> frozenset[str]:
        return frozenset(self._push)

    def outbox(self, channel: str) -> str:
        return self.keys.outbox(channel)

    async def notify(self, channel: str, conversation_id: str) -> None:
        if channel not in self._push:
            return
        await self.redis.xadd(
            self.outbox(channel),
            {"conversation_id": conversation_id},
            maxlen=self.maxlen,
            approximate=True,
        )
