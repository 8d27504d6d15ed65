"""The bot turn: understand the message (a trusted quick reply, or the NLU with its context),
triage it, then answer the FAQ, ask for clarification, count a miss, or take the hazard path."""

from __future__ import annotations

import logging
import time

from bot.conversation.hazards import CLEARED, HazardSteps
from bot.conversation.parts import Understanding
from bot.conversation.safety_check import FIELD as SAFETY_CHECK_FIELD
from bot.conversation.safety_check import PendingCheck, answer_of
from bot.core.messages import QuickReply
from bot.core.metrics import NLU_FAILURES, NLU_SECONDS
from bot.core.store.models import Conversation, Message
from nlu.client import NLURejected, NLUUnavailable
from nlu.triage.triage import TriageResult
from nlu.vi.text import detect_language

log = logging.getLogger("careline.conversation")

FALLBACK_INTENT = "nlu_fallback"
HUMAN_INTENT = "request_human"
NOT_OFFERED = {FALLBACK_INTENT, "out_of_scope", HUMAN_INTENT}


class BotTurn(HazardSteps):
    async def _bot_turn(self, conv: Conversation, msg: Message, context: tuple[str, ...]) -> None:
        # The conversation's bot state in one read (under its lock, nobody else changes it).
        raw_check, raw_misses, cleared = await self.redis.hmget(
            self._bot_key(conv.id), SAFETY_CHECK_FIELD, "misses", CLEARED
        )
        check = PendingCheck.loads(raw_check)
        if check is not None and check.message_id != msg.id:
            said = answer_of(msg.text, (msg.payload or {}).get("quick_reply"))
            if said is not None:
                await self._safety_answer(conv, msg, said)
                return
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
        misses = int(raw_misses or 0)
        t = self.triage.classify(
            msg.text,
            intent=u.intent,
            confidence=u.confidence,
            misses=misses,
            history=context,
            model=u.severity,
        )
        conv = await self._raise_severity(conv, t, language=lang)
        if t.severity == "critical":
            if check is not None:
                await self.safety_checks.close(conv.id)
            await self._hazard(conv, msg, u, t, lang)
            return
        if t.ask and check is None and not cleared:  # once told "no", the bot asks no more
            await self._ask_safety(conv, msg, u, t, lang)
            return
        await self._answer(conv, msg, u, t, lang, misses=misses)

    async def _answer(
        self, conv: Conversation, msg: Message, u: Understanding, t: TriageResult, lang: str,
        *, misses: int | None = None,
    ) -> None:  # fmt: skip
        """The ordinary turn: an FAQ answer (and its escalation, if it has one), or a miss.
        `misses`: the run of misses so far, if known (None: reset it regardless)."""
        info = self.content.intents.get(u.intent or "")
        if info is not None and u.confidence >= self.cfg.answer_threshold:
            if misses != 0:  # an answer ends a run of misses
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
