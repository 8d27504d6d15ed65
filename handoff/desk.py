"""The help desk: what agents and supervisors do with escalated chats, and who may do it.

It joins the pieces: the Redis queues (atomic claims, presence), the conversation engine
(state changes and messages the customer sees), SLA timers, the console feed, and the
escalation table in SQL, where every step is recorded (who, when, why) for reports.

Authorization lives here, not in the HTTP layer, so the WebSocket and any future API get
the same rules: an agent acts only on chats it holds (or, to look before claiming, on chats
waiting in queues it serves); supervisors and admins act on every chat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from bot.auth.accounts import Accounts, Principal
from bot.conversation.ports import AgentActions, Escalated, NotWithAgent
from bot.core.live.streams import EventLog
from bot.core.metrics import AGENT_MESSAGES, SLA_BREACHES
from bot.core.settings import Settings
from bot.core.store.db import Database
from bot.core.vocabulary import SEVERITIES, State
from handoff.feed import ConsoleFeed
from handoff.hours import describe, is_open
from handoff.line import HandoffLine
from handoff.queues import AgentQueues, ClaimResult
from handoff.reconcile import Reconciler
from handoff.sla import DueTimer, SlaTimers

log = logging.getLogger("careline.desk")
REFRESH_HEAD = 25  # waiting customers told their new place each time the line moves


class DeskError(Exception):
    """A refused desk action, with an HTTP status and a message for the agent."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class HelpDesk:
    """The desk owns the agent queues (through its `line`, which the core also sees as its
    `WaitingLine`) and acts on conversations only through the core's `AgentActions`."""

    settings: Settings
    engine: AgentActions
    line: HandoffLine
    db: Database
    event_log: EventLog
    sla: SlaTimers
    feed: ConsoleFeed
    accounts: Accounts

    def __post_init__(self) -> None:
        self.queues: AgentQueues = self.line.queues
        self._tasks: set[asyncio.Task[None]] = set()
        self.reconciler = Reconciler(self.db, self.queues, self.sla)
        self._next_reconcile = 0.0

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("help desk background step failed", exc_info=task.exception())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def tick(self) -> None:
        """Periodic: put back from SQL what Redis lost (every `reconcile_every_s`), then
        assign waiting chats to agents with room (covers interrupted steps)."""
        now = time.monotonic()
        if now >= self._next_reconcile:
            self._next_reconcile = now + self.settings.handoff.reconcile_every_s
            await self.reconciler.run_once()
        await self.auto_assign()

    def attach(self) -> None:
        """Listen to the engine: every escalation starts an SLA clock and reaches consoles."""
        self.engine.events.escalated.append(self.on_escalated)
        self.engine.events.severity_raised.append(self.on_severity_raised)
        self.engine.events.callback_requested.append(self.on_callback)

    # -- engine events ----------------------------------------------------------------------

    async def on_escalated(self, e: Escalated) -> None:
        deadline = await self.sla.start(e.conversation_id, e.severity, e.queue)
        await self.feed.publish(
            "escalated",
            conversation_id=e.conversation_id,
            queue=e.queue,
            severity=e.severity,
            reason=e.reason,
            language=e.language,
            channel=e.channel,
            sla_deadline=deadline,
        )
        # The engine calls us while holding the conversation's lock; assignment changes the
        # conversation too, so it runs after that lock is released (the periodic tick in
        # `tick()` retries anything a crash interrupted).
        self._spawn(self._after_escalation(e))

    async def _after_escalation(self, e: Escalated) -> None:
        serving = [a for a in await self.queues.agents() if e.queue in a.skills]
        # Only worth an assignment round when someone serving this queue has room.
        if any(a.available for a in serving) and e.conversation_id in await self.auto_assign():
            return
        hours = self.settings.handoff.opening_hours
        closed = not is_open(hours)
        if closed or not any(a.status == "online" for a in serving):
            await self.engine.offer_callback(
                e.conversation_id, closed=closed, hours=describe(hours)
            )

    async def on_severity_raised(self, conversation_id: str, severity: str) -> None:
        await self.sla.tighten(conversation_id, severity)
        await self.feed.publish("severity", conversation_id=conversation_id, severity=severity)

    async def on_callback(self, conversation_id: str, contact: str) -> None:
        await self.feed.publish("callback", conversation_id=conversation_id, contact=contact)

    async def on_breach(self, due: DueTimer) -> None:
        """A chat waited past its first-response deadline: record, alert, move it up."""
        conv = await self.db.get_conversation(due.conversation_id)
        if conv is None or conv.first_human_reply_at is not None:
            return
        if conv.state not in (State.WAITING_AGENT, State.WITH_AGENT):
            return
        if any(e.kind == "sla_breach" for e in await self.db.escalations(conv.id)):
            return  # a retried breach (a watcher died mid-way): already recorded
        limit = self.settings.handoff.sla_first_response_s[due.severity]
        await self.db.add_escalation(
            conv.id,
            "sla_breach",
            actor="system",
            severity=due.severity,
            queue=conv.queue,
            reason=f"no human reply within {limit:g} s ({due.severity})",
        )
        higher = _one_up(due.severity)
        if conv.state == State.WAITING_AGENT and higher != due.severity:
            await self.queues.raise_priority(conv.id, higher)
        SLA_BREACHES.labels(due.severity).inc()
        log.warning(
            "SLA breach: no human reply within %gs (%s, queue %s)",
            limit,
            due.severity,
            conv.queue,
            extra={"conversation_id": conv.id},
        )
        await self.feed.publish(
            "sla_breach",
            conversation_id=conv.id,
            queue=conv.queue,
            severity=due.severity,
            agent_id=conv.agent_id,
        )

    # -- presence and assignment ------------------------------------------------------------

    async def set_presence(self, who: Principal, status: str) -> None:
        if status not in ("online", "away", "offline"):
            raise DeskError(400, "bad_request", "status is online, away or offline")
        await self.queues.set_presence(
            who.id, status, skills=self.skills(who), max_chats=who.max_chats
        )  # type: ignore[arg-type]
        await self.feed.publish("presence", agent_id=who.id, status=status)
        if status == "online":
            await self.auto_assign()

    async def heartbeat(self, who: Principal) -> None:
        await self.queues.heartbeat(who.id)

    async def auto_assign(self) -> list[str]:
        """Give waiting chats to the least-loaded online agents; returns the chats assigned."""
        done = []
        for conversation_id, agent_id in await self.queues.assign_waiting():
            if await self._hand_over(conversation_id, agent_id, how="assigned"):
                done.append(conversation_id)
        return done

    async def _hand_over(self, conversation_id: str, agent_id: str, *, how: str) -> bool:
        """Finish a claim Redis already granted. If the conversation moved on meanwhile (the
        customer ended it, say), give the claim back instead of leaking the agent's capacity
        and leaving the chat out of line."""
        try:
            await self._joined(conversation_id, agent_id, how=how)
            return True
        except Exception:
            log.exception(
                "hand-over to %s failed; undoing the claim",
                agent_id,
                extra={"conversation_id": conversation_id},
            )
            conv = await self.db.get_conversation(conversation_id)
            still_waiting = conv is not None and conv.state == State.WAITING_AGENT
            await self.queues.release(agent_id, conversation_id, requeue=still_waiting)
            return False

    def skills(self, who: Principal) -> list[str]:
        known = self.settings.triage.queues
        return [q for q in who.queues if q in known] or (list(known) if who.sees_all_queues else [])

    # -- agent actions ----------------------------------------------------------------------

    async def claim(self, who: Principal, conversation_id: str | None = None) -> str:
        """Take a specific waiting chat, or (None) the most urgent one the agent may take."""
        if conversation_id is None:
            result = await self.queues.claim_next(who.id)
        else:
            await self._conversation(conversation_id)
            result = await self.queues.claim(who.id, conversation_id)
        if not result.ok or result.conversation_id is None:
            raise DeskError(409, result.reason or "refused", _claim_refusal(result))
        if not await self._hand_over(result.conversation_id, who.id, how="claimed"):
            raise DeskError(409, "not_waiting", "this chat ended before it could be handed over")
        return result.conversation_id

    async def _joined(self, conversation_id: str, agent_id: str, *, how: str) -> None:
        account = await self.accounts.get(agent_id)
        name = account.display_name if account else agent_id
        conv = await self.engine.agent_joined(conversation_id, agent_id, name)
        await self.db.add_escalation(
            conversation_id,
            "claimed",
            actor=agent_id,
            queue=conv.queue,
            severity=conv.severity,
            reason="auto-assigned" if how == "assigned" else "claimed by agent",
        )
        await self.feed.publish(
            how, conversation_id=conversation_id, agent_id=agent_id, queue=conv.queue
        )
        await self.queue_moved(conv.queue)

    async def queue_moved(self, queue: str | None) -> None:
        """The line moved: tell consoles, and the first waiting customers their new place.

        Only the head of the line is refreshed on every move (REFRESH_HEAD chats): it keeps
        the cost per claim bounded however long the line is; a customer further back got
        their place when they joined and gets updates once near the front.
        """
        if not queue:
            return
        await self.feed.publish("queue_changed", queue=queue)
        if not self.settings.handoff.position_updates:
            return
        for place, chat in enumerate(await self.queues.waiting(queue, limit=REFRESH_HEAD), 1):
            eta = await self.queues.estimated_wait_s(chat.conversation_id)
            await self.event_log.append(
                chat.conversation_id,
                {"kind": "queue", "position": place, "eta_s": round(eta) if eta else None},
            )

    async def send(
        self, who: Principal, conversation_id: str, text: str, client_msg_id: str
    ) -> Any:
        conv = await self._held(who, conversation_id, allow_supervisor=False)
        try:
            msg, first = await self.engine.agent_message(conv.id, who.id, text, client_msg_id)
        except NotWithAgent as e:
            raise DeskError(409, "not_with_agent", str(e)) from None
        if first:
            await self.sla.stop(conv.id)
        AGENT_MESSAGES.inc()
        return msg

    async def note(self, who: Principal, conversation_id: str, text: str) -> Any:
        await self._held(who, conversation_id, allow_supervisor=True)
        msg = await self.engine.agent_note(conversation_id, who.id, text)
        await self.feed.publish(
            "note",
            conversation_id=conversation_id,
            agent_id=who.id,
            message={"id": msg.id, "sender": "note", "text": msg.text, "by": who.display_name},
        )
        return msg

    async def transfer(
        self,
        who: Principal,
        conversation_id: str,
        *,
        to_queue: str | None,
        to_agent: str | None,
        note: str | None,
    ) -> None:
        conv = await self._held(who, conversation_id, allow_supervisor=True)
        if not to_queue and not to_agent:
            raise DeskError(400, "bad_request", "transfer needs to_queue or to_agent")
        if to_queue and to_queue not in self.settings.triage.queues:
            raise DeskError(400, "bad_request", f"unknown queue {to_queue!r}")
        if to_agent and await self.accounts.get(to_agent) is None:
            raise DeskError(400, "bad_request", f"unknown agent {to_agent!r}")
        result = await self.queues.transfer(
            conversation_id, to_queue=to_queue, to_agent=to_agent, note=note
        )
        if not result.ok:
            raise DeskError(409, result.reason or "refused", _claim_refusal(result))
        await self.db.add_escalation(
            conversation_id,
            "transferred",
            actor=who.id,
            queue=to_queue or conv.queue,
            severity=conv.severity,
            reason=f"to agent {to_agent}" if to_agent else f"to queue {to_queue}",
            note=note,
        )
        if to_agent:
            await self._joined(conversation_id, to_agent, how="assigned")
        else:
            await self.engine.requeue(conversation_id, to_queue or conv.queue)
            await self.feed.publish(
                "transferred", conversation_id=conversation_id, queue=to_queue, note=note
            )
            await self.queue_moved(to_queue)
            await self.auto_assign()

    async def release(self, who: Principal, conversation_id: str, note: str | None) -> None:
        """Back to the bot: the chat leaves the human queues."""
        conv = await self._held(who, conversation_id, allow_supervisor=True)
        holder = conv.agent_id or who.id
        if conv.state == State.WITH_AGENT:
            await self.queues.release(holder, conversation_id, requeue=False)
        else:
            await self.queues.remove(conversation_id)
        await self.sla.stop(conversation_id)
        await self.db.add_escalation(
            conversation_id,
            "released",
            actor=who.id,
            queue=conv.queue,
            severity=conv.severity,
            reason="returned to the bot",
            note=note,
        )
        await self.engine.return_to_bot(conversation_id)
        await self.feed.publish(
            "released", conversation_id=conversation_id, agent_id=holder, queue=conv.queue
        )
        if conv.state == State.WAITING_AGENT:
            await self.queue_moved(conv.queue)
        await self.auto_assign()  # the agent has room again

    async def resolve(self, who: Principal, conversation_id: str, note: str | None) -> None:
        """Done: frees the agent and ends the conversation (which starts the survey)."""
        conv = await self._held(who, conversation_id, allow_supervisor=True)
        await self.sla.stop(conversation_id)
        await self.db.add_escalation(
            conversation_id,
            "resolved",
            actor=who.id,
            queue=conv.queue,
            severity=conv.severity,
            note=note,
        )
        await self.engine.end(conversation_id)  # frees the agent (the line's `closed`)
        await self.feed.publish("resolved", conversation_id=conversation_id, agent_id=conv.agent_id)
        await self.auto_assign()

    # -- access -----------------------------------------------------------------------------

    async def _conversation(self, conversation_id: str) -> Any:
        conv = await self.db.get_conversation(conversation_id)
        if conv is None:
            raise DeskError(404, "not_found", "no such conversation")
        return conv

    async def _held(self, who: Principal, conversation_id: str, *, allow_supervisor: bool) -> Any:
        conv = await self._conversation(conversation_id)
        if conv.state != State.WITH_AGENT and not (
            allow_supervisor and conv.state == State.WAITING_AGENT
        ):
            raise DeskError(409, "not_with_agent", f"the conversation is {conv.state}")
        if conv.agent_id == who.id:
            return conv
        if allow_supervisor and who.sees_all_queues:
            return conv
        raise DeskError(403, "forbidden", "this chat is held by another agent")

    async def may_view(self, who: Principal, conversation_id: str) -> Any:
        """Agents see chats they hold and chats waiting in their queues; supervisors all."""
        conv = await self._conversation(conversation_id)
        if who.sees_all_queues or conv.agent_id == who.id:
            return conv
        if conv.state == State.WAITING_AGENT and conv.queue in self.skills(who):
            return conv
        raise DeskError(403, "forbidden", "not your chat")


def _one_up(severity: str) -> str:
    """The next severity up (critical stays critical)."""
    i = SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES) - 1
    return SEVERITIES[max(0, i - 1)]


def _claim_refusal(result: ClaimResult) -> str:
    return {
        "already_claimed": "another agent took this chat first",
        "not_waiting": "this chat is not waiting for an agent (or nothing waits in your queues)",
        "agent_offline": "set yourself online first (or the chosen agent is offline)",
        "not_skilled": "this chat is in a queue you don't serve",
        "at_capacity": "already at the maximum number of chats",
    }.get(result.reason or "", f"refused: {result.reason}")
