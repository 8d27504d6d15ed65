"""Handing a conversation to a person: the record, the state change, the customer told what
happens next (place in line, wait, or an honest callback), and the help desk told; each step
idempotent, so a crash in between is finished by the retry."""

from __future__ import annotations

import logging
from datetime import datetime

from bot.conversation.parts import EngineParts, now
from bot.conversation.ports import (
    Escalated,
)
from bot.core.metrics import ESCALATIONS
from bot.core.store.models import Conversation, Message
from bot.core.vocabulary import State
from nlu.contact import find_contact
from nlu.triage.triage import TriageResult, max_severity

log = logging.getLogger("careline.conversation")


def _stamp(ts: datetime | None) -> str:
    return ts.isoformat() if ts is not None else "-"


class EscalationSteps(EngineParts):
    async def escalate(
        self,
        conv: Conversation,
        msg: Message,
        reason: str,
        lang: str,
        t: TriageResult | None = None,
    ) -> None:
        """Hand the conversation to a person, record why, and tell the customer honestly."""
        if conv.state != State.BOT:
            return
        queue = (t.queue if t else None) or conv.queue or "general"
        severity = max_severity(conv.severity or "low", t.severity) if t else conv.severity
        if t and t.reasons:
            # Add triage's reasons the caller's text does not already carry (no repeats).
            extra = [r for r in t.reasons if r not in reason]
            reason = "; ".join([reason, *extra]) if extra else reason
        # The record first: whoever reacts to the state event finds the reason already stored.
        await self.db.add_escalation(
            conv.id, "escalated", actor="bot", reason=reason, queue=queue, severity=severity
        )
        conv = await self.transcript.set_state(
            conv,
            State.WAITING_AGENT,
            escalated_at=now(),
            bot_only=False,
            queue=queue,
            severity=severity,
        )
        await self._announce(conv, msg, reason, lang)

    async def _announce(self, conv: Conversation, msg: Message, reason: str, lang: str) -> None:
        """Everything after the escalation's record and state change: the customer told, the
        chat in line, the help desk told. Each step is idempotent, and the last one marks the
        escalation announced, so a crash in between is finished by the retry (`_handle`)."""
        queue, severity = conv.queue or "general", conv.severity or "normal"
        await self.transcript.reply(
            conv, msg, "escalated", self.content.system("escalated", lang), sender="system"
        )
        await self.line.enqueue(
            conv.id, queue, severity, reasons=(reason,), language=lang, channel=conv.channel
        )
        await self.transcript.reply(
            conv, msg, "pending", await self._waiting_text(conv.id, lang), sender="system"
        )
        event = Escalated(conv.id, queue, severity, reason, lang, conv.channel)
        for listener in self.events.escalated:
            await listener(event)
        await self.redis.hset(self._bot_key(conv.id), "announced", _stamp(conv.escalated_at))
        ESCALATIONS.inc()
        log.info("escalated: %s", reason, extra={"conversation_id": conv.id})

    async def _finish_cut_escalation(self, conv: Conversation, msg: Message) -> None:
        """A crash between an escalation's state change and its announcement left the chat
        WAITING_AGENT but perhaps out of line: finish it now (idempotently)."""
        announced = await self.redis.hget(self._bot_key(conv.id), "announced")
        if announced == _stamp(conv.escalated_at):
            return
        records = [e for e in await self.db.escalations(conv.id) if e.kind == "escalated"]
        reason = (records[-1].reason if records else None) or "escalated"
        log.warning("finishing an interrupted escalation", extra={"conversation_id": conv.id})
        await self._announce(conv, msg, reason, conv.language)

    async def _waiting_text(self, conversation_id: str, lang: str) -> str:
        """What happens next, honestly: a person replies here; place in line; wait if known."""
        parts = [self.content.system("handoff_pending", lang)]
        place = await self.line.position(conversation_id)
        if place is not None:
            parts.append(self.content.system("queue_position", lang, position=str(place[1])))
            wait = await self.line.estimated_wait_s(conversation_id)
            if wait is not None:
                minutes = str(max(1, round(wait / 60)))
                parts.append(self.content.system("queue_wait", lang, minutes=minutes))
        return " ".join(parts)

    async def _with_promise(self, safety_text: str, lang: str) -> str:
        """The safety answer ends with what will happen next, as the staffing of the safety
        queue and the agents online make it true: a specialist joining now, the 24/7 safety
        line to call now, or an honest callback."""
        queue = self.settings.triage.safety_queue
        found = await self.line.availability(queue)
        promise = self.content.system(
            f"safety_promise_{found.kind}", lang, safety_hotline=found.hotline or "",
            hours=found.hours,
        )  # fmt: skip
        return f"{safety_text}\n{promise}"

    async def _capture_callback(self, conv: Conversation, msg: Message) -> bool:
        """After a callback offer, a message with a phone number or email is the request."""
        if not await self.redis.hget(self._bot_key(conv.id), "callback"):
            return False
        contact = find_contact(msg.text)
        if not contact:
            return False
        await self.db.add_escalation(
            conv.id,
            "callback_requested",
            actor="customer",
            queue=conv.queue,
            severity=conv.severity,
            note=contact.display(),
        )
        await self.redis.hdel(self._bot_key(conv.id), "callback")
        lang = conv.language
        text = self.content.system("callback_saved", lang, contact=contact.display())
        await self.transcript.reply(conv, msg, "callback", text, sender="system")
        for listener in self.events.callback_requested:
            await listener(conv.id, contact.display())
        return True

    async def offer_callback(self, conversation_id: str, *, closed: bool, hours: str) -> None:
        """Nobody can answer soon: say so honestly and ask for contact details."""
        conv = await self.db.get_conversation(conversation_id)
        if conv is None or conv.state != State.WAITING_AGENT:
            return
        await self.redis.hset(self._bot_key(conv.id), "callback", 1)
        key = "callback_offer_closed" if closed else "callback_offer_busy"
        text = self.content.system(key, conv.language, hours=hours)
        await self.transcript.system_message(conv, text, key=f"{key}-{conv.escalated_at}")
