"""Danger, told or possible: safety instructions and a person at once for a hazard; the one
yes/no safety question when the model sees a possible one; and the watch kept on chats
waiting for or with a person, where a later message can still reveal danger."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from bot.conversation.escalation import EscalationSteps
from bot.conversation.parts import Understanding, now
from bot.conversation.safety_check import NO, YES, PendingCheck
from bot.core.live.locks import LockTimeout, redis_lock
from bot.core.messages import QuickReply
from bot.core.store.models import Conversation, Message
from bot.core.vocabulary import State
from nlu.client import NLURejected, NLUUnavailable
from nlu.triage.triage import TriageResult
from nlu.vi.text import detect_language

log = logging.getLogger("careline.conversation")

# The idempotency key of the bot's safety question: "re-<customer message id>-safety_check".
_SAFETY_QUESTION_KEY = re.compile(r"re-(\d+)-safety_check")
# Bot-state field: the customer answered "no" to the safety question in this conversation.
CLEARED = "safety_cleared"
# Questions older than this are not brought back: after a day the moment has passed.
RESTORE_HORIZON = timedelta(days=1)


class HazardSteps(EscalationSteps):
    async def _answer(
        self, conv: Conversation, msg: Message, u: Understanding, t: TriageResult, lang: str
    ) -> None:
        """The ordinary FAQ turn (the bot turn defines it): "no" to a safety question
        continues with it."""
        raise NotImplementedError

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
        # The customer said it is not dangerous: the same worry, read again in the context
        # of their next messages, is not asked about again (a real hazard still is caught:
        # a critical verdict never asks, it escalates).
        await self.redis.hset(self._bot_key(conv.id), CLEARED, 1)
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
        since = now() - RESTORE_HORIZON
        restored = 0
        for conversation_id in await self.db.open_safety_questions(since):
            try:
                async with redis_lock(
                    self.redis, self.keys.conversation_lock(conversation_id), wait_s=1.0
                ):
                    restored += await self._restore_safety_question(conversation_id)
            except LockTimeout:
                continue  # a turn is running: it decides; the next pass looks again
        if restored:
            log.warning("restored from SQL %d unanswered safety questions", restored)
        return restored

    async def _restore_safety_question(self, conversation_id: str) -> int:
        """Under the conversation's lock, so no answer is being handled meanwhile: the
        question is still open only if it is the conversation's last handoff record and the
        chat has stayed with the bot since (no escalation, no close in between)."""
        conv = await self.db.get_conversation(conversation_id)
        records = await self.db.escalations(conversation_id)
        if conv is None or conv.state != State.BOT or not records:
            return 0
        asked = records[-1]
        if asked.kind != "safety_question" or asked.note != "asked":
            return 0
        asked_at = asked.created_at  # the store reads timestamps back aware (UTC)
        if any(t is not None and t > asked_at for t in (conv.escalated_at, conv.resolved_at)):
            return 0  # the chat left the bot after the question: it no longer stands
        if await self.safety_checks.pending(conversation_id) is not None:
            return 0
        transcript = await self.db.transcript(conversation_id, limit=50)
        keys = (_SAFETY_QUESTION_KEY.fullmatch(m.client_msg_id or "") for m in transcript)
        found = [(m, k) for m, k in zip(transcript, keys, strict=True) if k]
        if not found:
            return 0
        question, match = found[-1]
        check = PendingCheck(
            int(match[1]), question.intent, question.confidence or 0.0, asked.reason or "",
            asked_at.timestamp() + self.settings.triage.model.ask_timeout_s,
        )  # fmt: skip
        return int(await self.safety_checks.restore(conversation_id, check))

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

    async def _triage_waiting(
        self, conv: Conversation, msg: Message, context: tuple[str, ...]
    ) -> None:
        """While a person is coming, a message can still reveal danger: say what to do now.
        After a callback offer, it may carry the contact details we asked for."""
        if conv.state == State.WAITING_AGENT and await self._capture_callback(conv, msg):
            return
        t = await self._triage_with_model(conv, msg, context)
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

    async def _triage_with_model(
        self, conv: Conversation, msg: Message, context: tuple[str, ...]
    ) -> TriageResult:
        """Triage a message the bot does not answer (a person is coming or is there): the
        learned model still reads it with its context, so a symptom told while waiting is
        caught; without the NLU service, the lexicon alone decides."""
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
