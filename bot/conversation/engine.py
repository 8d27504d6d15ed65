"""The conversation engine: one state machine per conversation, whatever the channel.

Two steps, on purpose:
- `accept()` runs in the channel's request path: it stores the customer's message durably
  (idempotently, by the channel's client_msg_id) and queues it for the bot. Only then does
  the channel acknowledge it to the customer.
- `process()` runs in an inbox worker on any replica, under a per-conversation lock: it
  answers every not-yet-handled customer message of the conversation, in order. Bot replies
  are stored with an idempotency key derived from the message they answer, so re-processing
  after a crash never sends a reply twice.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from bot.conversation.content import Content
from bot.conversation.ports import (
    Accepted,
    ClosingFlow,
    ConversationEvents,
    Escalated,
    NotWithAgent,
    WaitingLine,
)
from bot.conversation.safety_check import NO, YES, PendingCheck, SafetyChecks, answer_of
from bot.conversation.transcript import TranscriptWriter
from bot.core.live.locks import redis_lock
from bot.core.live.streams import EventLog, Inbox
from bot.core.messages import InboundMessage, QuickReply
from bot.core.metrics import ESCALATIONS, INBOX_HANDLED, NLU_FAILURES, NLU_SECONDS
from bot.core.settings import Settings
from bot.core.store.db import Database
from bot.core.store.models import Conversation, Message
from bot.core.vocabulary import LANGS, State
from nlu.client import NLUClient, NLURejected, NLUUnavailable, SeverityReading
from nlu.contact import find_contact
from nlu.triage.triage import Triage, TriageResult, max_severity
from nlu.vi.text import detect_language

log = logging.getLogger("careline.engine")

# The idempotency key of the bot's safety question: "re-<customer message id>-safety_check".
_SAFETY_QUESTION_KEY = re.compile(r"re-(\d+)-safety_check")

FALLBACK_INTENT = "nlu_fallback"
HUMAN_INTENT = "request_human"
NOT_OFFERED = {FALLBACK_INTENT, "out_of_scope", HUMAN_INTENT}


def now() -> datetime:
    return datetime.now(UTC)


def _stamp(ts: datetime | None) -> str:
    return ts.isoformat() if ts is not None else "-"


@dataclass(frozen=True)
class Understanding:
    intent: str | None
    confidence: float
    options: tuple[str, ...]  # other plausible intents, best first
    language: str | None
    severity: SeverityReading | None = None  # the learned severity verdict, if served


class ConversationEngine:
    """The conversation core as its callers see it: channels (`ChannelInbound`), the inbox
    worker (`process`), the help desk (`AgentActions`) and the safety timer."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        redis: aioredis.Redis,
        event_log: EventLog,
        inbox: Inbox,
        nlu: NLUClient,
        content: Content,
        triage: Triage,
        line: WaitingLine,
        transcript: TranscriptWriter,
        closing: ClosingFlow | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.engine
        self.db = db
        self.redis = redis
        self.event_log = event_log
        self.inbox = inbox
        self.keys = event_log.keys
        self.nlu = nlu
        self.content = content
        self.triage = triage
        self.line = line  # the help desk's waiting lines: the core knows nothing of agents
        self.closing = closing  # None: resolved conversations close without a survey
        self.transcript = transcript  # the only writer of visible messages and states
        self.outbound = transcript.outbound
        self.safety_checks = SafetyChecks(
            redis, event_log.keys, settings.triage.model.ask_timeout_s
        )
        self.events = ConversationEvents()

    # -- accepting customer messages (channel request path) -------------------------------

    async def accept(self, inbound: InboundMessage) -> Accepted:
        """Store a customer message durably and queue it for the bot. Idempotent."""
        customer = await self.db.get_or_create_customer(
            inbound.channel,
            inbound.external_id,
            language=inbound.locale,
            display_name=inbound.display_name,
        )
        async with redis_lock(self.redis, self.keys.customer_lock(customer.id)):
            conv = await self._open_conversation(customer.id, inbound)
        payload: dict[str, Any] = {}
        if inbound.payload:
            payload["quick_reply"] = inbound.payload
        if inbound.attachment:
            payload["attachment"] = inbound.attachment
        msg, created = await self.db.add_message(
            conv.id,
            "customer",
            inbound.text,
            client_msg_id=inbound.client_msg_id,
            payload=payload or None,
        )
        if created:
            await self.transcript.publish(conv, msg)
        if msg.processed_at is None:
            # Also on a retry: if we crashed before queueing it, this queues it now.
            await self.inbox.enqueue(conv.id, msg.stored_id)
        log.info(
            "accepted customer message",
            extra={"conversation_id": conv.id, "client_msg_id": inbound.client_msg_id},
        )
        return Accepted(conv.id, msg.stored_id, created)

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
        if self.closing:  # a new chat soon after a resolved one: that one did not hold (FCR)
            await self.closing.new_contact(customer_id, now())
        return await self.db.create_conversation(customer_id, inbound.channel, lang)

    async def answer_directly(
        self, inbound: InboundMessage, key: str, text: str, *, language: str | None = None
    ) -> Accepted:
        """A message the channel answers itself (a channel command such as /help, or a file the
        bot cannot read): stored in the transcript like any other, answered with `text`, never
        interpreted by the bot. `language` records an explicit choice (e.g. /lang en).
        Idempotent like accept(): a retry stores and answers nothing twice."""
        customer = await self.db.get_or_create_customer(
            inbound.channel, inbound.external_id, language=inbound.locale
        )
        async with redis_lock(self.redis, self.keys.customer_lock(customer.id)):
            conv = await self._open_conversation(customer.id, inbound)
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

    # -- answering (inbox worker) ---------------------------------------------------------

    async def process(self, conversation_id: str) -> int:
        """Handle every pending customer message of a conversation; returns how many."""
        handled = 0
        async with redis_lock(self.redis, self.keys.conversation_lock(conversation_id)):
            while True:
                pending = await self.db.unprocessed_customer_messages(
                    conversation_id=conversation_id
                )
                if not pending:
                    return handled
                for msg in pending:
                    await self._handle(await self._require(conversation_id), msg)
                    await self.db.mark_processed(msg.stored_id)
                    INBOX_HANDLED.inc()
                    handled += 1

    async def _handle(self, conv: Conversation, msg: Message) -> None:
        if self.closing and self.closing.wants(conv, msg):
            if await self.closing.on_message(conv, msg):
                return
            conv = await self._require(conv.id)  # left the survey: back to the bot
        if conv.state == State.WAITING_AGENT:
            await self._finish_cut_escalation(conv, msg)
        if conv.state != State.BOT:
            await self._triage_waiting(conv, msg)  # a person handles it; we only watch severity
            return
        await self.event_log.signal(conv.id, {"typing": {"who": "bot", "on": True}})
        try:
            await self._bot_turn(conv, msg)
        finally:
            await self.event_log.signal(conv.id, {"typing": {"who": "bot", "on": False}})

    async def _bot_turn(self, conv: Conversation, msg: Message) -> None:
        check = await self.safety_checks.pending(conv.id)
        if check is not None and check.message_id != msg.id:
            said = answer_of(msg.text, (msg.payload or {}).get("quick_reply"))
            if said is not None:
                await self._safety_answer(conv, msg, said)
                return
        context = await self._context(conv, msg)
        try:
            u = await self._understand(msg, context)
        except NLURejected as e:
            # Our request was refused (e.g. longer than the service accepts): retrying cannot
            # help, so treat it as not understood instead of leaving the message stuck.
            NLU_FAILURES.inc()
            log.warning(
                "NLU rejected the message: %s", e.message, extra={"conversation_id": conv.id}
            )
            u = Understanding(None, 0.0, (), detect_language(msg.text, default=conv.language))
        except NLUUnavailable as e:
            NLU_FAILURES.inc()
            log.warning("NLU unavailable: %s", e.reason, extra={"conversation_id": conv.id})
            lang = detect_language(msg.text, default=conv.language)
            await self.transcript.reply(
                conv, msg, "nlu", self.content.system("nlu_unavailable", lang)
            )
            await self.escalate(conv, msg, f"the assistant is unavailable ({e.reason})", lang)
            return
        lang = u.language or conv.language
        if lang != conv.language:
            conv = await self.db.update_conversation(conv.id, language=lang)
        misses = int(await self.redis.hget(self._bot_key(conv.id), "misses") or 0)
        t = self.triage.classify(
            msg.text,
            intent=u.intent,
            confidence=u.confidence,
            misses=misses,
            history=context,
            model=u.severity,
        )
        conv = await self._raise_severity(conv, t)
        if t.severity == "critical":
            if check is not None:
                await self.safety_checks.close(conv.id)
            await self._hazard(conv, msg, u, t, lang)
            return
        if t.ask and check is None:
            await self._ask_safety(conv, msg, u, t, lang)
            return
        await self._answer(conv, msg, u, t, lang)

    async def _answer(
        self, conv: Conversation, msg: Message, u: Understanding, t: TriageResult, lang: str
    ) -> None:
        """The ordinary turn: an FAQ answer (and its escalation, if it has one), or a miss."""
        info = self.content.intents.get(u.intent or "")
        if info is not None and u.confidence >= self.cfg.answer_threshold:
            await self.redis.hset(self._bot_key(conv.id), "misses", 0)
            answer = self.content.answer(info.name, lang)
            if answer:
                await self.transcript.reply(
                    conv, msg, "answer", answer, intent=u.intent, confidence=u.confidence
                )
            if info.action == "escalate":
                why = f"{info.title('en')} (intent {info.name}, confidence {u.confidence:.0%})"
                await self.escalate(conv, msg, why, lang, t)
            return
        await self._miss(conv, msg, u, lang)

    async def _miss(self, conv: Conversation, msg: Message, u: Understanding, lang: str) -> None:
        misses = int(await self.redis.hincrby(self._bot_key(conv.id), "misses", 1))
        await self.redis.expire(self._bot_key(conv.id), 7 * 24 * 3600)
        if misses >= self.cfg.misses_before_handoff:
            why = f"the bot did not understand {misses} messages in a row"
            t = self.triage.classify(
                msg.text, intent=u.intent, confidence=u.confidence, misses=misses
            )
            await self.escalate(conv, msg, why, lang, t)
            return
        human = QuickReply(self.content.title(HUMAN_INTENT, lang), f"intent:{HUMAN_INTENT}")
        options = [QuickReply(self.content.title(i, lang), f"intent:{i}") for i in u.options[:2]]
        if options:
            text = self.content.system(
                "clarify", lang, options=" / ".join(o.title for o in options)
            )
            await self.transcript.reply(conv, msg, "clarify", text, quick_replies=(*options, human))
        else:
            await self.transcript.reply(
                conv, msg, "fallback", self.content.system("fallback", lang), quick_replies=(human,)
            )

    async def _offered(self, conversation_id: str, payload: str) -> bool:
        """Did one of the bot's recent messages in this conversation offer `payload`?"""
        recent = await self.db.transcript(conversation_id, limit=30, include_notes=False)
        return any(
            q.get("payload") == payload
            for m in recent
            if m.sender in ("bot", "system")
            for q in (m.payload or {}).get("quick_replies") or []
        )

    async def _context(self, conv: Conversation, msg: Message) -> tuple[str, ...]:
        """The customer's last few messages before this one, oldest first: triage reads a
        hazard told over several messages as one (careline.triage.model.context_messages)."""
        n = self.settings.triage.model.context_messages
        if n == 0:
            return ()
        recent = await self.db.transcript(conv.id, limit=4 * n + 4, include_notes=False)
        earlier = [
            m.text
            for m in recent
            if m.sender == "customer" and m.stored_id < msg.stored_id and m.text
        ]
        return tuple(earlier[-n:])

    async def _understand(self, msg: Message, context: tuple[str, ...] = ()) -> Understanding:
        """A quick-reply payload the bot offered in this conversation is a trusted choice
        (asking for a person always is); anything else, a forged payload included, is read
        as text by the NLU, so a visitor cannot pick a severity by naming an intent."""
        payload = (msg.payload or {}).get("quick_reply") or ""
        chosen = payload.removeprefix("intent:")
        if chosen in self.content.intents and (
            chosen == HUMAN_INTENT or await self._offered(msg.conversation_id, payload)
        ):
            return Understanding(chosen, 1.0, (), detect_language(msg.text))
        started = time.monotonic()
        result = await self.nlu.parse(msg.text, message_id=str(msg.id), context=context)
        NLU_SECONDS.observe(time.monotonic() - started)
        options = tuple(
            r.name
            for r in result.ranking
            if r.name in self.content.intents
            and r.name not in NOT_OFFERED
            and r.confidence >= self.cfg.clarify_min_confidence
        )
        lang = result.language or detect_language(msg.text)
        return Understanding(result.intent, result.confidence, options, lang, result.severity)

    # -- actions ------------------------------------------------------------------------

    async def _hazard(
        self, conv: Conversation, msg: Message, u: Understanding, t: TriageResult, lang: str
    ) -> None:
        """Danger to people or property: safety instructions first, then a person, at once."""
        info = self.content.intents.get(u.intent or "")
        hazard_answer = (
            self.content.answer(info.name, lang)
            if info is not None and t.queue == "safety" and info.action == "escalate"
            else None
        )
        await self.transcript.reply(
            conv,
            msg,
            "safety",
            await self._with_promise(hazard_answer or self.content.system("safety", lang), lang),
            intent=u.intent,
            confidence=u.confidence,
        )
        await self.escalate(conv, msg, "; ".join(t.reasons) or "hazard", lang, t)

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

    async def _ask_safety(
        self, conv: Conversation, msg: Message, u: Understanding, t: TriageResult, lang: str
    ) -> None:
        """A possible hazard: the first safety step now, and one yes/no question."""
        reason = "; ".join(t.reasons)
        await self.db.add_escalation(
            conv.id, "safety_question", actor="bot", reason=reason, queue="safety",
            severity=conv.severity, note="asked",
        )  # fmt: skip
        buttons = (
            QuickReply(self.content.system("safety_check_yes", lang), YES),
            QuickReply(self.content.system("safety_check_no", lang), NO),
        )
        await self.transcript.reply(
            conv, msg, "safety_check", self.content.system("safety_check", lang),
            quick_replies=buttons, intent=u.intent, confidence=u.confidence,
        )  # fmt: skip
        await self.safety_checks.open(conv.id, msg.stored_id, u.intent, u.confidence, reason)
        log.info("safety question asked: %s", reason, extra={"conversation_id": conv.id})

    async def _safety_answer(self, conv: Conversation, msg: Message, yes: bool) -> None:
        """The customer answered the safety question."""
        check = await self.safety_checks.pending(conv.id)
        await self.safety_checks.close(conv.id)
        lang = conv.language
        if yes:
            why = "the customer answered yes to the safety question"
            await self._safety_escalate(conv, msg, why, check.reason if check else "")
            return
        await self.db.add_escalation(
            conv.id, "safety_question", actor="customer", queue="safety",
            severity=conv.severity, note="answered no",
        )  # fmt: skip
        await self.transcript.reply(
            conv, msg, "safety_clear", self.content.system("safety_check_clear", lang)
        )
        safety = self.settings.triage.safety_queue
        hazard_intent = check is not None and (
            self.settings.triage.intent_queue.get(check.intent or "") == safety
        )
        if check is not None and check.intent in self.content.intents and not hazard_intent:
            # "no continues normally": answer what the customer asked in the first place
            u = Understanding(check.intent, check.confidence, (), lang)
            t = self.triage.classify(msg.text)
            await self._answer(conv, msg, u, t, lang)

    async def safety_question_timeout(self, conversation_id: str) -> None:
        """No answer in time: treat the possible hazard as a real one (the timer calls this)."""
        async with redis_lock(self.redis, self.keys.conversation_lock(conversation_id)):
            check = await self.safety_checks.pending(conversation_id)
            conv = await self.db.get_conversation(conversation_id)
            await self.safety_checks.close(conversation_id)
            if check is None or conv is None or conv.state != State.BOT:
                return
            msg = next(
                (
                    m
                    for m in await self.db.transcript(conv.id, limit=50)
                    if m.id == check.message_id
                ),
                None,
            )
            if msg is None:
                return
            secs = int(self.settings.triage.model.ask_timeout_s)
            why = f"no answer to the safety question within {secs} s"
            await self._safety_escalate(conv, msg, why, check.reason)

    async def restore_safety_questions(self) -> int:
        """Put back from SQL every unanswered safety question Redis no longer holds, with
        its deadline from when it was asked (the timer then fires any that are overdue).
        Idempotent, so every replica may run it; returns how many were put back."""
        restored = 0
        timeout = self.settings.triage.model.ask_timeout_s
        for asked in await self.db.open_safety_questions():
            if await self.safety_checks.pending(asked.conversation_id) is not None:
                continue
            transcript = await self.db.transcript(asked.conversation_id, limit=50)
            keys = (_SAFETY_QUESTION_KEY.fullmatch(m.client_msg_id or "") for m in transcript)
            found = [(m, k) for m, k in zip(transcript, keys, strict=True) if k]
            if not found:
                continue
            question, match = found[-1]
            asked_at = asked.created_at.replace(tzinfo=asked.created_at.tzinfo or UTC)
            check = PendingCheck(
                int(match[1]), question.intent, question.confidence or 0.0, asked.reason or "",
                asked_at.timestamp() + timeout,
            )  # fmt: skip
            if await self.safety_checks.restore(asked.conversation_id, check):
                restored += 1
        if restored:
            log.warning("restored from SQL %d unanswered safety questions", restored)
        return restored

    async def _safety_escalate(
        self, conv: Conversation, msg: Message, why: str, asked: str
    ) -> None:
        lang = conv.language
        reasons = tuple(r for r in (why, f"asked because: {asked}" if asked else "") if r)
        t = TriageResult("critical", self.settings.triage.safety_queue, reasons, None, 0.0)
        await self.db.add_escalation(
            conv.id, "safety_question", actor="bot", queue="safety", severity="critical",
            reason=asked or None, note=why,
        )  # fmt: skip
        conv = await self._raise_severity(conv, t)
        text = await self._with_promise(self.content.system("safety", lang), lang)
        await self.transcript.reply(conv, msg, "safety", text)
        await self.escalate(conv, msg, why, lang, t)

    async def _triage_waiting(self, conv: Conversation, msg: Message) -> None:
        """While a person is coming, a message can still reveal danger: say what to do now.
        After a callback offer, it may carry the contact details we asked for."""
        if conv.state == State.WAITING_AGENT and await self._capture_callback(conv, msg):
            return
        t = await self._triage_with_model(conv, msg)
        if t.severity == "critical" and conv.severity != "critical":
            # Safety words first, then the record, then the severity: the stored severity
            # stays below critical until the last step, so a crash anywhere in between is
            # finished when this message is processed again (the reply is idempotent).
            lang = detect_language(msg.text, default=conv.language) or conv.language
            text = await self._with_promise(self.content.system("safety", lang), lang)
            await self.transcript.reply(conv, msg, "safety", text, sender="system")
            if not await self._critical_recorded(conv):  # by a run a crash cut short
                await self.db.add_escalation(
                    conv.id,
                    "escalated",
                    actor="bot",
                    severity="critical",
                    queue=conv.queue,
                    reason="; ".join(t.reasons),
                )
        await self._raise_severity(conv, t)

    async def _triage_with_model(self, conv: Conversation, msg: Message) -> TriageResult:
        """Triage a message the bot does not answer (a person is coming or is there): the
        learned model still reads it with its context, so a symptom told while waiting is
        caught; without the NLU service, the lexicon alone decides."""
        context = await self._context(conv, msg)
        try:
            result = await self.nlu.parse(msg.text, message_id=str(msg.id), context=context)
        except (NLUUnavailable, NLURejected):
            return self.triage.classify(msg.text, history=context)
        return self.triage.classify(msg.text, history=context, model=result.severity)

    async def _critical_recorded(self, conv: Conversation) -> bool:
        """Is a critical escalation already on record since this handoff began?"""
        return any(
            e.kind == "escalated" and e.severity == "critical"
            and (conv.escalated_at is None or e.created_at >= conv.escalated_at)
            for e in await self.db.escalations(conv.id)
        )  # fmt: skip

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

    # -- agent actions (called by the help desk; authorization is the desk's job) ----------

    async def agent_joined(
        self, conversation_id: str, agent_id: str, agent_name: str
    ) -> Conversation:
        """A person took the chat: WITH_AGENT, and the customer is told who it is."""
        async with redis_lock(self.redis, self.keys.conversation_lock(conversation_id)):
            conv = await self._require(conversation_id)
            if conv.state == State.WITH_AGENT and conv.agent_id == agent_id:
                return conv
            if conv.state == State.WITH_AGENT:
                conv = await self.db.update_conversation(conv.id, agent_id=agent_id)
            else:
                conv = await self.transcript.set_state(conv, State.WITH_AGENT, agent_id=agent_id)
            text = self.content.system("agent_joined", conv.language, agent=agent_name)
            await self.transcript.system_message(conv, text)
            return conv

    async def agent_message(
        self, conversation_id: str, agent_id: str, text: str, client_msg_id: str
    ) -> tuple[Message, bool]:
        """An agent's reply; idempotent by the console's client_msg_id. Returns (message,
        first): `first` when it is the conversation's first human reply (SLA met).

        Under the conversation's lock and re-checked there, so a reply racing a resolve or a
        transfer is refused (NotWithAgent) instead of landing after the agent let go."""
        async with redis_lock(self.redis, self.keys.conversation_lock(conversation_id)):
            conv = await self._require(conversation_id)
            if conv.state != State.WITH_AGENT or conv.agent_id != agent_id:
                raise NotWithAgent(f"the conversation is {conv.state}, not with this agent")
            msg, created = await self.db.add_message(
                conv.id,
                "agent",
                text,
                sender_id=agent_id,
                client_msg_id=f"ag-{agent_id}-{client_msg_id}",
                processed=True,
            )
            first = False
            if created:
                if conv.first_human_reply_at is None:
                    conv = await self.db.update_conversation(conv.id, first_human_reply_at=now())
                    first = True
                await self.transcript.publish(conv, msg)
            return msg, first

    async def agent_note(self, conversation_id: str, agent_id: str, text: str) -> Message:
        """An internal note: stored, never published to the customer's stream."""
        msg, _ = await self.db.add_message(
            conversation_id, "note", text, sender_id=agent_id, processed=True
        )
        return msg

    async def requeue(self, conversation_id: str, queue: str) -> Conversation:
        """Transferred to another queue: waiting again, and the customer knows why."""
        async with redis_lock(self.redis, self.keys.conversation_lock(conversation_id)):
            conv = await self._require(conversation_id)
            if conv.state == State.WITH_AGENT:
                conv = await self.transcript.set_state(
                    conv, State.WAITING_AGENT, agent_id=None, queue=queue
                )
            else:
                conv = await self.db.update_conversation(conv.id, queue=queue)
            await self.transcript.system_message(
                conv, self.content.system("transferred", conv.language)
            )
            return conv

    async def return_to_bot(self, conversation_id: str) -> Conversation:
        """The agent released the chat: the bot answers again, with a fresh miss count."""
        async with redis_lock(self.redis, self.keys.conversation_lock(conversation_id)):
            conv = await self._require(conversation_id)
            if conv.state == State.BOT:
                return conv
            conv = await self.transcript.set_state(conv, State.BOT, agent_id=None)
            await self.redis.delete(self._bot_key(conv.id))
            await self.transcript.system_message(
                conv, self.content.system("returned_to_bot", conv.language)
            )
            return conv

    async def _require(self, conversation_id: str) -> Conversation:
        conv = await self.db.get_conversation(conversation_id)
        if conv is None:
            raise KeyError(f"no conversation {conversation_id!r}")
        return conv

    async def _raise_severity(self, conv: Conversation, t: TriageResult) -> Conversation:
        """A conversation's severity only ever goes up."""
        new = max_severity(conv.severity or "low", t.severity)
        if new != conv.severity:
            # The stored severity last: the steps before it only ever raise (a place in line,
            # a deadline), and until it is written a re-processed message repeats them all.
            if conv.state == State.WAITING_AGENT:
                await self.line.raise_priority(conv.id, new)  # moves up the line
            if conv.state in (State.WAITING_AGENT, State.WITH_AGENT):
                for listener in self.events.severity_raised:
                    await listener(conv.id, new)
            conv = await self.db.update_conversation(conv.id, severity=new)
        return conv

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

    async def end(self, conversation_id: str) -> None:
        """The conversation is resolved (customer, agent or idle sweep): the survey starts,
        and the conversation closes when it is answered, skipped or expired. Ending it again
        during the survey skips the survey."""
        async with redis_lock(self.redis, self.keys.conversation_lock(conversation_id)):
            conv = await self.db.get_conversation(conversation_id)
            if conv is None or conv.state == State.CLOSED:
                return
            if conv.state == State.SURVEY:
                if self.closing:
                    await self.closing.skip(conv)
                else:
                    await self.transcript.set_state(conv, State.CLOSED, closed_at=now())
                return
            t = now()
            held_by = conv.agent_id if conv.state == State.WITH_AGENT else None
            await self.line.closed(conversation_id, held_by)  # nobody picks up a closed chat
            if self.closing:
                conv = await self.db.update_conversation(conv.id, resolved_at=t)
                if await self.closing.start(conv):
                    return
            await self.transcript.set_state(conv, State.CLOSED, closed_at=t, resolved_at=t)

    def _bot_key(self, conversation_id: str) -> str:
        return self.keys.bot_state(conversation_id)
