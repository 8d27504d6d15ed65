"""The transcript writer: the one place that stores what a customer may see and tells live
viewers about it.

Why one writer: every visible message (bot, system, agent, the survey's questions) and every
state change must reach SQL first, then the conversation's event stream, then push channels,
in that order and idempotently, or a resumed socket or a Telegram chat would miss or repeat
something. The engine's steps and the closing flow both write through here.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import redis.asyncio as aioredis

from bot.core.live.outbound import Outbound
from bot.core.live.streams import EventLog
from bot.core.messages import QuickReply
from bot.core.metrics import BOT_REPLIES
from bot.core.store.db import Database
from bot.core.store.models import Conversation, Message
from bot.core.views import message_event
from bot.core.vocabulary import State, check_transition


class TranscriptWriter:
    def __init__(
        self, db: Database, redis: aioredis.Redis, event_log: EventLog, outbound: Outbound,
        closed_ttl_s: int,
    ) -> None:  # fmt: skip
        self.db = db
        self.redis = redis
        self.event_log = event_log
        self.keys = event_log.keys
        self.outbound = outbound
        self.closed_ttl_s = closed_ttl_s

    async def set_state(self, conv: Conversation, state: State, **fields: Any) -> Conversation:
        """A checked state change with an event for live viewers."""
        check_transition(conv.state, state)
        reopened = conv.state == State.CLOSED
        conv = await self.db.update_conversation(conv.id, state=str(state), **fields)
        await self.event_log.append(conv.id, {"kind": "state", "state": str(state)})
        if state == State.CLOSED:  # its live keys go once it can no longer reopen
            await self._expire_live_keys(conv.id, self.closed_ttl_s)
        elif reopened:
            await self.redis.persist(self.keys.events(conv.id))
        return conv

    async def _expire_live_keys(self, conversation_id: str, ttl_s: int) -> None:
        """A closed conversation's event stream and bot state live on in Redis only as long
        as it may reopen (and resume there); SQL keeps its transcript for ever."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.expire(self.keys.events(conversation_id), ttl_s)
            pipe.expire(self.keys.bot_state(conversation_id), ttl_s)
            await pipe.execute()

    async def reply(
        self, conv: Conversation, to: Message, key: str, text: str, *, sender: str = "bot",
        quick_replies: tuple[QuickReply, ...] = (), intent: str | None = None,
        confidence: float | None = None,
    ) -> None:  # fmt: skip
        """The answer to one customer message; re-processing that message sends nothing
        twice (the idempotency key is derived from it)."""
        await self.bot_message(
            conv, f"re-{to.id}-{key}", text, sender=sender, quick_replies=quick_replies,
            intent=intent, confidence=confidence, kind=key,
        )  # fmt: skip

    async def bot_message(
        self, conv: Conversation, idempotency_key: str, text: str, *, sender: str = "bot",
        quick_replies: tuple[QuickReply, ...] = (), intent: str | None = None,
        confidence: float | None = None, kind: str = "survey",
    ) -> None:  # fmt: skip
        """Store a bot/system message once per key and publish it."""
        payload = {"quick_replies": [q.as_dict() for q in quick_replies]} if quick_replies else None
        msg, created = await self.db.add_message(
            conv.id, sender, text, client_msg_id=idempotency_key, payload=payload,
            intent=intent, confidence=confidence, processed=True,
        )  # fmt: skip
        if created:
            BOT_REPLIES.labels(kind).inc()
            await self.publish(conv, msg)

    async def system_message(
        self, conv: Conversation, text: str, *, key: str | None = None
    ) -> None:
        """A message from careline itself; `key` makes it idempotent."""
        msg, created = await self.db.add_message(
            conv.id, "system", text, client_msg_id=f"sys-{key or uuid4().hex}", processed=True
        )
        if created:
            await self.publish(conv, msg)

    async def publish(self, conv: Conversation, msg: Message) -> None:
        """Every stored message the customer may see goes out through here: live viewers,
        then push channels. Internal notes never do."""
        if msg.sender == "note":
            return
        await self.event_log.append(conv.id, message_event(msg))
        if msg.sender != "customer":
            await self.outbound.notify(conv.channel, conv.id)

    async def publish_customer(self, conversation_id: str, msg: Message) -> None:
        """The customer's own message, for live viewers (push channels only carry what is
        said to the customer)."""
        assert msg.sender == "customer"
        await self.event_log.append(conversation_id, message_event(msg))


__all__ = ["TranscriptWriter"]
