"""What a channel adapter is given besides the core's `ChannelInbound`.

Why: a channel needs Redis for its own rate limits and dedup, the outbound stream its sender
drains, and the bot's button titles; it gets exactly those, never the conversation engine's
internals."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from bot.conversation.content import Content
from bot.core.live.keys import Keys
from bot.core.live.outbound import Outbound


@dataclass(frozen=True)
class LiveServices:
    redis: aioredis.Redis
    keys: Keys
    outbound: Outbound
    content: Content


__all__ = ["LiveServices"]
