"""What every part of the conversation core shares: its collaborators, the reading of a
conversation's recent messages, and the one rule that a conversation's severity only rises.

The core is split by job, one module each (intake, the bot turn, hazards, escalation,
agent actions), all standing on this base; engine.py puts them together."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis

from bot.conversation.content import Content
from bot.conversation.ports import (
    ClosingFlow,
    ConversationEvents,
    WaitingLine,
)
from bot.conversation.safety_check import SafetyChecks
from bot.conversation.transcript import TranscriptWriter
from bot.core.live.streams import EventLog, Inbox
from bot.core.settings import Settings
from bot.core.store.db import Database
from bot.core.store.models import Conversation
from bot.core.vocabulary import State
from nlu.client import NLUClient, SeverityReading
from nlu.triage.triage import Triage, TriageResult, max_severity


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Understanding:
    intent: str | None
    confidence: float
    options: tuple[str, ...]  # other plausible intents, best first
    language: str | None
    severity: SeverityReading | None = None  # the learned severity verdict, if served


class EngineParts:
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
        self.cfg = settings.conversation
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
        self.safety_checks = SafetyChecks(
            redis, event_log.keys, settings.triage.model.ask_timeout_s
        )
        self.events = ConversationEvents()
        # Conversations answered at once per replica, by the inbox worker and on arrival.
        self.turn_slots = asyncio.Semaphore(self.cfg.workers)
        self._local_turns: set[asyncio.Task[None]] = set()  # turns run where they arrived
        self._turns_stopped = False
        self._spilling = False  # turns go to the inbox while it has a backlog (engine.py)
        self._spills_started = self._spills_done = 0  # turns sent there while spilling
        # Conversations with a turn running or waiting on this replica (see _turn_here).
        self._turns_here: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        # Channel identity → customer id. A customer row is never deleted or re-keyed, so
        # once known, a visitor's later messages skip the lookup (bounded: oldest go first).
        self.customer_ids: OrderedDict[tuple[str, str], str] = OrderedDict()
        # Customer id → the conversation their last message went into. Only a guess: a
        # message goes there only while the database says it is open (intake.py).
        self.open_conversations: OrderedDict[str, str] = OrderedDict()
        # Earlier messages triage reads with each one (careline.triage.model.context_messages).
        self._context_messages = settings.triage.model.context_messages

    async def _start_turn(self, conversation_id: str, message_id: int) -> None:
        """Have the bot answer an accepted message: through the inbox, which any replica's
        worker reads (the engine answers on the spot when it can)."""
        await self.inbox.enqueue(conversation_id, message_id)

    async def _require(self, conversation_id: str) -> Conversation:
        conv = await self.db.get_conversation(conversation_id)
        if conv is None:
            raise KeyError(f"no conversation {conversation_id!r}")
        return conv

    def _bot_key(self, conversation_id: str) -> str:
        return self.keys.bot_state(conversation_id)

    async def _raise_severity(
        self, conv: Conversation, t: TriageResult, *, language: str | None = None
    ) -> Conversation:
        """A conversation's severity only ever goes up. `language`: the one the turn found,
        written in the same statement when either changed (a new conversation's first turn
        usually sets both)."""
        fields: dict[str, str] = {}
        if language is not None and language != conv.language:
            fields["language"] = language
        new = max_severity(conv.severity or "low", t.severity)
        if new != conv.severity:
            # The stored severity last: the steps before it only ever raise (a place in line,
            # a deadline), and until it is written a re-processed message repeats them all.
            if conv.state == State.WAITING_AGENT:
                await self.line.raise_priority(conv.id, new)  # moves up the line
            if conv.state in (State.WAITING_AGENT, State.WITH_AGENT):
                for listener in self.events.severity_raised:
                    await listener(conv.id, new)
            fields["severity"] = new
        if fields:
            conv = await self.db.update_conversation(conv.id, **fields)
        return conv
