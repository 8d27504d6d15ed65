"""One Pub/Sub connection per gateway replica, fanned out to its WebSocket connections.

Why not one blocking XREAD per socket: a thousand widgets would hold a thousand Redis
connections. Instead each replica subscribes to the notify channels of the conversations it
has sockets for, and each socket, when woken, reads the stream from its own last id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

import redis.asyncio as aioredis

from bot.core import wire_json
from bot.core.live.keys import Keys

log = logging.getLogger("careline.hub")


class Hub:
    def __init__(self, redis: aioredis.Redis, keys: Keys, replica: str) -> None:
        self.redis = redis
        self.keys = keys
        self.replica = replica
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # A channel of our own so the reader has something to listen to from the start.
        await self._pubsub.subscribe(self.keys.replica(self.replica))
        self._task = asyncio.create_task(self._reader(), name="hub-reader")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def subscribe(self, conversation_id: str) -> asyncio.Queue[dict[str, Any]]:
        """A queue that receives every notification for this conversation."""
        return await self.subscribe_channel(self.keys.notify(conversation_id))

    async def unsubscribe(self, conversation_id: str, q: asyncio.Queue[dict[str, Any]]) -> None:
        await self.unsubscribe_channel(self.keys.notify(conversation_id), q)

    async def subscribe_channel(self, channel: str) -> asyncio.Queue[dict[str, Any]]:
        """A queue that receives every JSON message published on `channel` (e.g. the console
        feed), through this replica's single Pub/Sub connection."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        async with self._lock:
            if not self._queues[channel]:
                await self._pubsub.subscribe(channel)
            self._queues[channel].add(q)
        return q

    async def unsubscribe_channel(self, channel: str, q: asyncio.Queue[dict[str, Any]]) -> None:
        async with self._lock:
            subs = self._queues.get(channel)
            if not subs:
                return
            subs.discard(q)
            if not subs:
                del self._queues[channel]
                await self._pubsub.unsubscribe(channel)

    async def _reader(self) -> None:
        while True:
            try:
                msg = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pubsub read failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if not msg or msg.get("type") != "message":
                continue
            channel = msg["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else str(channel)
            try:
                payload = wire_json.loads(msg["data"])
            except (TypeError, ValueError):
                continue
            for q in list(self._queues.get(channel, ())):
                if q.full():  # a stuck socket: it will catch up from the stream anyway
                    with contextlib.suppress(asyncio.QueueEmpty):
                        q.get_nowait()
                q.put_nowait(payload)
