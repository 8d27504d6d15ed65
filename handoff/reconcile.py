"""Putting back what Redis lost, from SQL: the waiting lines, who holds which chat, and the
first-response clocks.

Why: Redis holds the help desk's fast state (queues, assignments, SLA deadlines), but SQL is
the source of truth for every conversation's state. A Redis restarted without persistence, a
FLUSHALL or a failover to an empty replica would otherwise strand every waiting chat: SQL
says WAITING_AGENT while no queue lists it, so nobody can claim it and no deadline fires.
Every replica runs this at startup and on the help desk's tick; each step is idempotent and
leaves alone what Redis still has, so replicas running it at once agree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.core.live.locks import LockTimeout, redis_lock
from bot.core.store.db import Database
from bot.core.store.models import Conversation
from bot.core.vocabulary import State
from handoff.queues import AgentQueues
from handoff.sla import SlaTimers

log = logging.getLogger("careline.reconcile")

MAX_CHATS = 10_000  # open handoffs looked at per pass
LOCK_WAIT_S = 1.0  # for a chat's lock before putting it back


def _epoch(ts: datetime | None) -> float | None:
    if ts is None:
        return None
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


@dataclass
class Repaired:
    queued: int = 0  # waiting chats put back in line
    held: int = 0  # chats put back with their agent
    clocks: int = 0  # first-response deadlines put back

    def __bool__(self) -> bool:
        return bool(self.queued or self.held or self.clocks)


class Reconciler:
    def __init__(self, db: Database, queues: AgentQueues, sla: SlaTimers) -> None:
        self.db = db
        self.queues = queues
        self.sla = sla

    async def run_once(self) -> Repaired:
        """One pass over every open handoff in SQL."""
        states = [str(State.WAITING_AGENT), str(State.WITH_AGENT)]
        convs = await self.db.list_conversations(states=states, limit=MAX_CHATS)
        done = Repaired()
        if not convs:
            return done
        ids = [c.id for c in convs]
        known = await self.queues.known(ids)
        clocks = await self.sla.deadlines(ids)
        for conv in convs:
            if conv.id not in known:
                await self._restore_chat(conv, done)
            if conv.id not in clocks and await self._clock_owed(conv):
                started = _epoch(conv.escalated_at) or _epoch(conv.created_at) or 0.0
                queue = conv.queue or "general"
                await self.sla.restore(conv.id, conv.severity or "normal", queue, started)
                done.clocks += 1
        if done:
            log.warning(
                "restored from SQL what Redis had lost: %d waiting, %d held, %d deadlines",
                done.queued, done.held, done.clocks,
            )  # fmt: skip
        return done

    async def _restore_chat(self, listed: Conversation, done: Repaired) -> None:
        """Put one chat back, under its conversation's lock and as SQL and Redis have it now:
        the pass read SQL a while ago, and a chat resolved, released or transferred since
        (which frees Redis before SQL, under that lock) must not come back as held, taking
        an agent's room for good."""
        try:
            async with redis_lock(
                self.queues.redis, self.sla.keys.conversation_lock(listed.id), wait_s=LOCK_WAIT_S
            ):
                conv = await self.db.get_conversation(listed.id)
                if conv is None or conv.state not in (State.WAITING_AGENT, State.WITH_AGENT):
                    return
                if await self.queues.known([conv.id]):
                    return
                await self._restore_current(conv, done)
        except LockTimeout:
            return  # busy: whoever holds it is changing the chat; the next pass looks again

    async def _restore_current(self, conv: Conversation, done: Repaired) -> None:
        escalations = [e for e in await self.db.escalations(conv.id) if e.kind == "escalated"]
        reasons = (escalations[-1].reason,) if escalations and escalations[-1].reason else ()
        agent = conv.agent_id if conv.state == State.WITH_AGENT else None
        result = await self.queues.restore(
            conv.id,
            conv.queue if conv.queue in self.queues.queues else "general",
            conv.severity or "normal",
            enqueued_at=_epoch(conv.escalated_at) or _epoch(conv.created_at) or 0.0,
            agent_id=agent,
            reasons=reasons,
            language=conv.language,
            channel=conv.channel,
        )
        if result == "restored":
            done.queued += 1
        elif result == "assigned":
            done.held += 1

    async def _clock_owed(self, conv: Conversation) -> bool:
        """Does this chat still wait for its first human reply, with no breach on record?"""
        if conv.first_human_reply_at is not None:
            return False
        since = _epoch(conv.escalated_at) or 0.0
        return not any(
            e.kind == "sla_breach" and (_epoch(e.created_at) or 0.0) >= since
            for e in await self.db.escalations(conv.id)
        )


__all__ = ["Reconciler", "Repaired"]
