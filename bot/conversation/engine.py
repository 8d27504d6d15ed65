"""The conversation engine: one state machine per conversation, whatever the channel.

Two steps, on purpose:
- `accept()` runs in the channel's request path: it stores the customer's message durably
  (idempotently, by the channel's client_msg_id) and starts the bot's turn on it. Only then
  does the channel acknowledge it to the customer.
- `process()` runs under a per-conversation lock and answers every not-yet-handled customer
  message of the conversation, in order. It runs on the replica that accepted the message,
  at once, when that replica has a free slot and the conversation is not busy; otherwise
  (or if the turn fails) the message goes to the inbox, which a worker on any replica reads.
  A replica that dies mid-turn leaves the message unanswered in SQL, where every replica's
  sweep finds it. Bot replies are stored with an idempotency key derived from the message
  they answer, so re-processing after a crash never sends a reply twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.exceptions import RedisError

from bot.conversation.agent_side import AgentSide
from bot.conversation.intake import Intake
from bot.conversation.parts import now
from bot.conversation.turn import BotTurn
from bot.core.live.locks import LockTimeout, redis_lock
from bot.core.live.tasks import stop_loop_and_tasks
from bot.core.metrics import INBOX_HANDLED
from bot.core.store.db import STORE_UNREACHABLE
from bot.core.store.models import Conversation, Message
from bot.core.vocabulary import State

log = logging.getLogger("careline.conversation")

TYPING_AFTER_S = 0.3  # a bot turn slower than this shows the typing indicator
# Turns running or waiting where they arrived, per slot: with the default 32 slots, under a
# second of work; beyond it the shared line may find a replica with less to do.
LOCAL_TURNS_PER_SLOT = 8
PENDING_BATCH = 100  # a conversation's unanswered messages read at a time


class ConversationEngine(Intake, BotTurn, AgentSide):
    """The conversation core as its callers see it: channels (`ChannelInbound`), the inbox
    worker (`process`), the help desk (`AgentActions`) and the safety timer. Each job lives
    in its own module; this one runs a conversation's pending messages and ends it."""

    async def process(self, conversation_id: str, *, wait_s: float = 30.0) -> int:
        """Handle every pending customer message of a conversation; returns how many.
        Raises LockTimeout if another turn holds the conversation for longer than `wait_s`."""
        handled = 0
        lock = self.keys.conversation_lock(conversation_id)
        async with self._turn_here(conversation_id), redis_lock(self.redis, lock, wait_s=wait_s):
            while True:
                work = await self.db.pending_work(
                    conversation_id, context=self._context_messages, limit=PENDING_BATCH
                )
                if work is None:
                    return handled
                conv = work.conversation
                for i, (msg, context) in enumerate(work.messages):
                    if i:  # the message before may have changed it (an escalation)
                        conv = await self._require(conversation_id)
                    await self._handle(conv, msg, context)
                    await self.db.mark_processed(msg.stored_id)
                    INBOX_HANDLED.inc()
                    handled += 1
                # A message that arrived meanwhile has its own turn, which runs this again
                # once the lock is free: only a full batch means more are waiting now.
                if not work.more:
                    return handled

    @asynccontextmanager
    async def _turn_here(self, conversation_id: str) -> AsyncIterator[None]:
        """One turn of a conversation at a time on this replica, waited for in memory: the
        customer's next message usually arrives while the turn that answered the last one
        is still finishing, and polling Redis for its lock (or sending the message through
        the inbox) would cost more than that wait."""
        entry = self._turns_here.setdefault(conversation_id, (asyncio.Lock(), [0]))
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._turns_here[conversation_id]

    # -- where a turn runs ----------------------------------------------------------------

    async def _start_turn(self, conversation_id: str, message_id: int) -> None:
        """Answer where the message arrived: no queue hop, and the reply goes out through
        this replica's own sockets. A turn waits here for one of the replica's slots; the
        inbox takes what this replica should not hold: turns beyond LOCAL_TURNS_PER_SLOT per
        slot (another replica may be idle), and anything once it is stopping."""
        backlog = LOCAL_TURNS_PER_SLOT * self.cfg.workers
        if len(self._local_turns) >= backlog:
            # Once turns spill, new ones join the inbox's line behind them until it has
            # caught up (`inbox_caught_up`): turns taking places here as they free up would
            # overtake the spilled ones again and again, which waited far longer for it.
            self._spilling = True
        if self._turns_stopped or self._spilling:
            self._spills_started += 1
            try:
                await super()._start_turn(conversation_id, message_id)
            finally:
                self._spills_done += 1
            return
        task = asyncio.get_running_loop().create_task(
            self._local_turn(conversation_id, message_id), name="local-turn"
        )
        self._local_turns.add(task)
        task.add_done_callback(self._local_turns.discard)

    def spill_mark(self) -> int | None:
        """Taken by the inbox worker before it reads: which spilled turns the read will see.
        None while one is still on its way into the inbox (it may land after the read)."""
        return self._spills_started if self._spills_started == self._spills_done else None

    def inbox_caught_up(self, mark: int | None) -> bool:
        """The inbox worker's read, begun at `mark`, left no backlog: turns may run where they
        arrive again, unless a turn has spilled since. A read can come back with the first of
        a burst of spilled turns before the rest are in (they end their accept together when
        their messages share one commit); calling that caught up would let the next turn
        overtake the rest of the burst. True if turns run where they arrive now."""
        if mark is not None and mark == self._spills_started:
            self._spilling = False
        return not self._spilling

    async def _local_turn(self, conversation_id: str, message_id: int) -> None:
        try:
            async with self.turn_slots:
                await self.process(conversation_id, wait_s=0)
        except LockTimeout:
            # Another replica is running a turn of this conversation (one here would have
            # been waited for in memory); it may be past reading its work list, so the
            # inbox runs this one after it.
            await self._queue_turn(conversation_id, message_id)
        except asyncio.CancelledError:
            await asyncio.shield(self._queue_turn(conversation_id, message_id))  # stopping
            raise
        except STORE_UNREACHABLE as e:  # an outage, not a bug: one line, no traceback
            log.warning(
                "turn waits for the database (%r); queued for a retry", e,
                extra={"conversation_id": conversation_id},
            )  # fmt: skip
            await self._queue_turn(conversation_id, message_id)
        except Exception:
            log.exception(
                "turn failed; queued for a retry", extra={"conversation_id": conversation_id}
            )
            await self._queue_turn(conversation_id, message_id)

    async def _queue_turn(self, conversation_id: str, message_id: int) -> None:
        try:
            await super()._start_turn(conversation_id, message_id)
        except Exception:  # Redis is out too: SQL still says the message is unanswered
            log.warning(
                "could not queue a turn; the unanswered-message sweep will",
                extra={"conversation_id": conversation_id},
            )

    async def stop_turns(self, grace_s: float = 5.0) -> None:
        """Start no more turns here; let running ones finish, then queue what is left."""
        self._turns_stopped = True
        if self._local_turns:
            await asyncio.wait(set(self._local_turns), timeout=grace_s)
        await stop_loop_and_tasks(None, self._local_turns)

    async def _handle(self, conv: Conversation, msg: Message, context: tuple[str, ...]) -> None:
        """`context`: the customer's last few messages before this one, oldest first: triage
        reads a hazard told over several messages as one."""
        if self.closing and self.closing.wants(conv, msg):
            if await self.closing.on_message(conv, msg):
                return
            conv = await self._require(conv.id)  # left the survey: back to the bot
        if conv.state == State.WAITING_AGENT:
            await self._finish_cut_escalation(conv, msg)
        if conv.state != State.BOT:
            # A person handles it; the bot only watches its severity.
            await self._triage_waiting(conv, msg, context)
            return
        async with self._typing_if_slow(conv.id):
            await self._bot_turn(conv, msg, context)

    @asynccontextmanager
    async def _typing_if_slow(self, conversation_id: str) -> AsyncIterator[None]:
        """Show the bot typing only for a turn that takes a while (a slow NLU call): a turn
        of a few milliseconds answers before an indicator could be seen, and two signals
        around it would cost more than the turn itself."""
        loop = asyncio.get_running_loop()
        shown: asyncio.Task[None] | None = None

        async def signal(on: bool) -> None:
            with contextlib.suppress(RedisError):  # only an indicator: the turn goes on
                await self.event_log.signal(conversation_id, {"typing": {"who": "bot", "on": on}})

        def show() -> None:
            nonlocal shown
            shown = loop.create_task(signal(True))

        # A timer, not a task per turn: most turns end before it fires and cancel it.
        timer = loop.call_later(TYPING_AFTER_S, show)
        try:
            yield
        finally:
            timer.cancel()
            if shown is not None:
                await shown  # the on signal first, then the off
                await signal(False)

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
