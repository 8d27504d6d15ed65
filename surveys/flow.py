"""The micro-survey at close: CES (1-7), then CSAT (1-5), then optional NPS (0-10), then an
optional comment, in the conversation's language, as ordinary stored bot messages with
quick replies (buttons on the widget, inline keyboards on Telegram: channels need no survey
code).

This is the conversation core's `ClosingFlow` (bot.conversation.ports): the core offers it
every resolved conversation (`start()`, from every close path) and hands it customer
messages while the conversation is in SURVEY (or that carry a survey button payload). It
writes through the core's `ConversationOutput` and knows nothing else of the core. The
survey row is the flow's durable state; every reply has an idempotency key, and every answer
is a conditional UPDATE, so a crash, a retry or a double click never records or says
anything twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot.conversation.ports import ConversationOutput
from bot.core.messages import QuickReply
from bot.core.settings import SurveySettings
from bot.core.store.db import Database
from bot.core.store.models import Conversation, Message, SurveyStatus, utcnow
from bot.core.vocabulary import State
from surveys.answers import (
    SCALES,
    SKIP_PAYLOAD,
    Comment,
    Score,
    Skip,
    is_survey_payload,
    parse_answer,
    score_payload,
)
from surveys.metrics import SURVEY_ANSWERS, SURVEYS_FINISHED, SURVEYS_OFFERED
from surveys.store import FINISHED, Snapshot, SurveyStore
from surveys.texts import SurveyTexts

log = logging.getLogger("careline.surveys")
SHORT_UNCLEAR_WORDS = 3  # an unclear answer this short is asked again; longer: a new question


class SurveyFlow:
    def __init__(
        self,
        output: ConversationOutput,
        db: Database,
        store: SurveyStore,
        texts: SurveyTexts,
        cfg: SurveySettings,
    ) -> None:
        self.output = output
        self.db = db
        self.store = store
        self.texts = texts
        self.cfg = cfg

    @property
    def steps(self) -> tuple[str, ...]:
        steps = ["ces", "csat"]
        if self.cfg.nps_enabled:
            steps.append("nps")
        if self.cfg.ask_comment:
            steps.append("comment")
        return tuple(steps)

    def _next(self, step: str) -> str | None:
        steps = self.steps
        i = steps.index(step) if step in steps else len(steps)
        return steps[i + 1] if i + 1 < len(steps) else None

    # -- at close ------------------------------------------------------------------------

    async def start(self, conv: Conversation) -> bool:
        """Offer the survey for a conversation being resolved (the engine holds its lock).

        True: the first question is out and the conversation is in SURVEY. False: no survey
        this time (disabled, or this conversation already had its one survey) and the caller
        closes the conversation.
        """
        resolved_at = conv.resolved_at or utcnow()
        snap = Snapshot.of(conv, resolved_at)
        if not self.cfg.enabled:
            return False
        expires = utcnow() + timedelta(hours=self.cfg.expiry_hours)
        row, created = await self.store.offer(snap, first_step=self.steps[0], expires_at=expires)
        if not created and row.status in FINISHED:
            await self.store.resnapshot(snap)  # reopened and resolved again: one survey only
            return False
        if created:
            SURVEYS_OFFERED.labels(conv.channel).inc()
        # Also when resuming after a crash between offering and asking: the key makes the
        # question go out once.
        step = row.step or self.steps[0]
        await self._ask(conv, step, key=f"survey-{conv.id}-{step}", to=None)
        if conv.state != State.SURVEY:
            await self.output.set_state(conv, State.SURVEY)
        log.info("survey offered", extra={"conversation_id": conv.id})
        return True

    async def skip(self, conv: Conversation) -> None:
        """The customer ended the chat again while the survey was open: that is a skip."""
        if await self.store.finish(conv.id, SurveyStatus.SKIPPED):
            SURVEYS_FINISHED.labels("skipped").inc()
        await self._close(conv)

    async def expire(self, conversation_id: str) -> None:
        """Called by the sweeper under the conversation lock: past the expiry, nobody
        answered; the survey closes quietly (the customer has left)."""
        row = await self.store.get(conversation_id)
        if row is None or row.status != SurveyStatus.ASKED or row.expires_at > utcnow():
            return
        if await self.store.finish(conversation_id, SurveyStatus.EXPIRED):
            SURVEYS_FINISHED.labels("expired").inc()
        conv = await self.db.get_conversation(conversation_id)
        if conv is not None and conv.state == State.SURVEY:
            await self._close(conv)

    # -- answers -------------------------------------------------------------------------

    def is_answer(self, payload: str | None) -> bool:
        return is_survey_payload(payload)

    async def reopened(self, conversation_id: str) -> None:
        """A resolved conversation came back: it was not resolved at first contact."""
        await self.store.mark_reopened(conversation_id)

    async def new_contact(self, customer_id: str, at: datetime) -> None:
        """A new chat soon after a resolved one: that one did not hold (FCR)."""
        await self.store.note_new_contact(
            customer_id, at, timedelta(days=self.cfg.repeat_contact_days)
        )

    def wants(self, conv: Conversation, msg: Message) -> bool:
        return conv.state == State.SURVEY or is_survey_payload(_payload(msg))

    async def on_message(self, conv: Conversation, msg: Message) -> bool:
        """Handle a customer message in SURVEY (or a survey button pressed later).

        Returns False when the message is not an answer but a new request: the survey is
        left (answers so far kept), the conversation is back with the bot, and the engine
        answers the message as usual.
        """
        lang = conv.language
        payload = _payload(msg)
        row = await self.store.get(conv.id)
        if row is None or row.status != SurveyStatus.ASKED:
            if conv.state == State.SURVEY:
                await self._close(conv)  # finish a close a crash interrupted
                return True
            if is_survey_payload(payload):  # a button from a finished survey
                done = row is not None and row.status == SurveyStatus.COMPLETED
                await self._say(
                    conv, msg, "late", self.texts.reply("already" if done else "expired", lang)
                )
                return True
            return False
        if row.expires_at <= utcnow():
            if await self.store.finish(conv.id, SurveyStatus.EXPIRED):
                SURVEYS_FINISHED.labels("expired").inc()
            await self._say(conv, msg, "late", self.texts.reply("expired", lang))
            await self._close(conv)
            return True
        step = row.step
        answer = parse_answer(step, msg.text, payload, self.texts)
        if isinstance(answer, Skip) and step == "comment":
            answer = Comment("")  # the comment is optional: declining it completes the survey
        if isinstance(answer, Skip):
            await self._say(conv, msg, "skipped", self.texts.reply("skipped", lang))
            if await self.store.finish(conv.id, SurveyStatus.SKIPPED):
                SURVEYS_FINISHED.labels("skipped").inc()
            await self._close(conv)
            return True
        if isinstance(answer, Score) and answer.step != step:
            return True  # a second click on an answered question: already recorded
        if isinstance(answer, Score | Comment):
            value = (
                answer.value
                if isinstance(answer, Score)
                else answer.text[: self.cfg.comment_max_chars] or None
            )
            nxt = self._next(step)
            # Say first, then store: re-running after a crash in between says nothing twice
            # (idempotent key) and then stores; storing first could lose the next question.
            if nxt is None:
                await self._say(conv, msg, "thanks", self.texts.reply("thanks", lang))
            else:
                await self._ask(conv, nxt, key=None, to=msg)
            if await self.store.answer(conv.id, step, value, nxt):
                SURVEY_ANSWERS.labels(step).inc()
                if nxt is None:
                    SURVEYS_FINISHED.labels("completed").inc()
            if nxt is None:
                await self._close(conv)
            log.info("survey answer: %s", step, extra={"conversation_id": conv.id})
            return True
        if is_survey_payload(payload) or answer.words <= SHORT_UNCLEAR_WORDS:
            await self._say(
                conv,
                msg,
                "retry",
                self.texts.reply(f"retry_{step}", lang),
                quick_replies=self._buttons(step, lang),
            )
            return True
        # A new request rather than an answer: the customer is not done after all.
        if await self.store.finish(conv.id, SurveyStatus.ABANDONED):
            SURVEYS_FINISHED.labels("abandoned").inc()
        await self.store.mark_reopened(conv.id)
        await self.output.set_state(conv, State.BOT, reopen_count=conv.reopen_count + 1)
        return False

    # -- helpers -------------------------------------------------------------------------

    def _buttons(self, step: str, lang: str) -> tuple[QuickReply, ...]:
        skip = QuickReply(self.texts.skip_label(lang), SKIP_PAYLOAD)
        if step == "comment":
            return (skip,)
        lo, hi = SCALES[step]
        scores = tuple(
            QuickReply(self.texts.score_label(step, v, lang), score_payload(step, v))
            for v in range(lo, hi + 1)
        )
        return (*scores, skip)

    async def _ask(
        self, conv: Conversation, step: str, *, key: str | None, to: Message | None
    ) -> None:
        text = self.texts.question(step, conv.language)
        buttons = self._buttons(step, conv.language)
        if to is None:
            assert key is not None
            await self.output.bot_message(conv, key, text, quick_replies=buttons)
        else:
            await self._say(conv, to, f"survey-{step}", text, quick_replies=buttons)

    async def _say(
        self,
        conv: Conversation,
        to: Message,
        key: str,
        text: str,
        quick_replies: tuple[QuickReply, ...] = (),
    ) -> None:
        await self.output.bot_message(
            conv, f"re-{to.id}-survey-{key}", text, quick_replies=quick_replies
        )

    async def _close(self, conv: Conversation) -> None:
        if conv.state == State.SURVEY:
            await self.output.set_state(conv, State.CLOSED, closed_at=utcnow())


def _payload(msg: Message) -> str | None:
    return (msg.payload or {}).get("quick_reply")
