"""Intake, on the channel's request path: store the customer's message durably and idempotently,
in the customer's open conversation (reopening a recent one, or starting anew), and start the
bot's turn on it; only then does the channel acknowledge it."""

from __future__ import annotations

import logging
from datetime import UTC, timedelta
from typing import Any

from bot.conversation.parts import EngineParts, now
from bot.conversation.ports import (
    Accepted,
)
from bot.core.live.locks import redis_lock
from bot.core.messages import InboundMessage
from bot.core.store.models import Conversation
from bot.core.vocabulary import LANGS, State
from nlu.vi.text import detect_language

log = logging.getLogger("careline.conversation")

KNOWN_CUSTOMERS = 50_000  # customer ids remembered per replica (a few MB)


class Intake(EngineParts):
    async def accept(self, inbound: InboundMessage) -> Accepted:
        """Store a customer message durably and queue it for the bot. Idempotent."""
        customer_id, known = await self._customer_id(inbound)
        payload: dict[str, Any] = {}
        if inbound.payload:
            payload["quick_reply"] = inbound.payload
        if inbound.attachment:
            payload["attachment"] = inbound.attachment
        # The usual message: into the conversation the customer's last one went to, in one
        # statement that checks it is still open; anything else takes the general way.
        open_id = self.open_conversations.get(customer_id) if known else None
        msg = None
        if open_id is not None:
            msg = await self.db.add_to_open_conversation(
                open_id, inbound.text, client_msg_id=inbound.client_msg_id,
                payload=payload or None,
            )  # fmt: skip
        if open_id is not None and msg is not None:
            conversation_id, created = open_id, True
            self.open_conversations.move_to_end(customer_id)
        else:
            conv = await self._conversation_for(customer_id, inbound, known=known)
            msg, created = await self.db.add_message(
                conv.id,
                "customer",
                inbound.text,
                client_msg_id=inbound.client_msg_id,
                payload=payload or None,
            )
            conversation_id = conv.id
            self.open_conversations[customer_id] = conv.id
            if len(self.open_conversations) > KNOWN_CUSTOMERS:
                self.open_conversations.popitem(last=False)
        if created:
            await self.transcript.publish_customer(conversation_id, msg)
        if msg.processed_at is None:
            # Also on a retry: if we crashed before its turn ran, this runs it now.
            await self._start_turn(conversation_id, msg.stored_id)
        log.debug(  # one per message: at info it costs a visible share of the turn
            "accepted customer message",
            extra={"conversation_id": conversation_id, "client_msg_id": inbound.client_msg_id},
        )
        return Accepted(conversation_id, msg.stored_id, created)

    async def _customer_id(self, inbound: InboundMessage) -> tuple[str, bool]:
        """The sender's customer id, made on first contact (with its language and name),
        and whether the customer was there before this message."""
        identity = (inbound.channel, inbound.external_id)
        known = self.customer_ids.get(identity)
        if known is not None:
            self.customer_ids.move_to_end(identity)
            return known, True
        customer, created = await self.db.customer_for(
            inbound.channel,
            inbound.external_id,
            language=inbound.locale,
            display_name=inbound.display_name,
            likely_new=inbound.new_identity,
        )
        self.customer_ids[identity] = customer.id
        if len(self.customer_ids) > KNOWN_CUSTOMERS:
            self.customer_ids.popitem(last=False)
        return customer.id, not created

    async def _conversation_for(
        self, customer_id: str, inbound: InboundMessage, *, known: bool = True
    ) -> Conversation:
        """The conversation this message belongs to. An open one is simply read: only
        reopening or starting one changes anything, and that is done under the customer's
        lock, so two messages sent at once never start two conversations. A customer this
        message made has no conversation to read yet (one sent with it is found under the
        lock)."""
        if known:
            conv = await self.db.latest_conversation(customer_id)
            if conv is not None and conv.state != State.CLOSED:
                return conv
        async with redis_lock(self.redis, self.keys.customer_lock(customer_id)):
            return await self._open_conversation(customer_id, inbound)

    async def _open_conversation(self, customer_id: str, inbound: InboundMessage) -> Conversation:
        """The customer's open conversation; reopen a recently closed one, or start anew."""
        conv = await self.db.latest_conversation(customer_id)
        if conv is not None and conv.state != State.CLOSED:
            return conv
        if conv is not None and self.closing and self.closing.is_answer(inbound.payload):
            return conv  # a late survey button: answered politely, never reopens the chat
        window = timedelta(hours=self.cfg.reopen_window_hours)
        closed_at = conv.closed_at if conv is not None else None
        if closed_at is not None and closed_at.tzinfo is None:
            closed_at = closed_at.replace(tzinfo=UTC)
        if conv is not None and closed_at is not None and now() - closed_at <= window:
            conv = await self.transcript.set_state(
                conv, State.BOT, closed_at=None, reopen_count=conv.reopen_count + 1
            )
            await self.redis.delete(self._bot_key(conv.id))
            if self.closing:
                await self.closing.reopened(conv.id)  # not resolved at first contact
            return conv
        lang = inbound.locale if inbound.locale in LANGS else None
        lang = detect_language(inbound.text, default=lang or "vi")
        if self.closing and conv is not None:
            # A new chat soon after a resolved one: that one did not hold (FCR). A first
            # chat has nothing before it to count against.
            await self.closing.new_contact(customer_id, now())
        return await self.db.create_conversation(customer_id, inbound.channel, lang)

    async def answer_directly(
        self, inbound: InboundMessage, key: str, text: str, *, language: str | None = None
    ) -> Accepted:
        """A message the channel answers itself (a channel command such as /help, or a file the
        bot cannot read): stored in the transcript like any other, answered with `text`, never
        interpreted by the bot. `language` records an explicit choice (e.g. /lang en).
        Idempotent like accept(): a retry stores and answers nothing twice."""
        customer_id, known = await self._customer_id(inbound)
        conv = await self._conversation_for(customer_id, inbound, known=known)
        if language in LANGS and conv.language != language:
            conv = await self.db.update_conversation(conv.id, language=language)
        payload = {"attachment": inbound.attachment} if inbound.attachment else None
        msg, created = await self.db.add_message(
            conv.id,
            "customer",
            inbound.text,
            client_msg_id=inbound.client_msg_id,
            payload=payload,
            processed=True,
        )
        if created:
            await self.transcript.publish(conv, msg)
        await self.transcript.reply(conv, msg, key, text)
        return Accepted(conv.id, msg.stored_id, created)
