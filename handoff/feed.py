"""The console feed: live events every agent console listens to (one Redis Pub/Sub channel).

Escalations, claims, transfers, releases, SLA breaches and internal notes. It is a wake-up
and display channel, not a record: the durable history is the escalation table in SQL, and
a console that reconnects reloads the queues over HTTP.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from bot.core import wire_json
from bot.core.live.keys import Keys


class ConsoleFeed:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.channel = keys.console

    async def publish(self, kind: str, **fields: Any) -> None:
        event = {"kind": kind, "at": time.time(), **fields}
        await self.redis.publish(self.channel, wire_json.dumps(event))
