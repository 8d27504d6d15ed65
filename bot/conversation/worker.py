"""Inbox workers: take queued customer messages from Redis and let the engine answer them.

Runs on every replica (a Redis consumer group shares the work). An entry is acknowledged
only after the engine has handled its conversation, so a replica killed mid-message leaves
the entry pending; any replica claims pending entries idle longer than `claim_idle_ms`.
A periodic sweep re-queues customer messages the database says are still unanswered (in
case a queue entry itself was lost, e.g. Redis restarted without persistence).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from bot.conversation.engine import ConversationEngine
from bot.core.live.locks import LockTimeout
from bot.core.live.streams import GROUP, Inbox, read_group, trim_acknowledged
from bot.core.live.tasks import stop_loop_and_tasks
from bot.core.store.coalesce import Coalescer
from bot.core.store.db import STORE_UNREACHABLE, Database

log = logging.getLogger("careline.worker")

READ_COUNT = 32  # inbox entries read at a time; a shorter read means no backlog is left


class InboxWorker:
    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        inbox: Inbox,
        engine: ConversationEngine,
        db: Database,
        consumer: str,
        slots: asyncio.Semaphore,
        concurrency: int = 8,
        claim_idle_ms: int = 15_000,
        sweep_every_s: float = 15.0,
        sweep_older_than_s: float = 30.0,
    ) -> None:
        self.redis = redis
        self.inbox = inbox
        self.engine = engine
        self.db = db
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self.sweep_every_s = sweep_every_s
        self.sweep_older_than_s = sweep_older_than_s
        # The replica's turn slots, shared with the turns the engine runs where they arrived:
        # an entry's turn waits for one in line with those, in arrival order.
        self._slots = slots
        self._most_held = 2 * concurrency
        self._held = asyncio.Semaphore(self._most_held)  # entries taken and not yet done
        self._tasks: set[asyncio.Task[None]] = set()
        # Entries finished together are acknowledged by one XACK.
        self._acks: Coalescer[str, None] = Coalescer(self._ack_many)
        self._stopping = False
        self.handled = 0

    async def run(self) -> None:
        await self.inbox.ensure_group()
        loop = asyncio.get_running_loop()
        next_claim = next_sweep = loop.time()
        # A flag, not only cancellation: a cancel that lands inside redis-py's blocking read
        # can be absorbed there, and the loop would block again forever.
        while not self._stopping:
            try:
                if loop.time() >= next_claim:
                    await self._claim_stale()
                    await trim_acknowledged(self.redis, self.inbox.key, GROUP)
                    next_claim = loop.time() + max(1.0, self.claim_idle_ms / 3000)
                if loop.time() >= next_sweep:
                    await self._sweep()
                    next_sweep = loop.time() + self.sweep_every_s
                entries = await self._read()
                for eid, fields in entries:
                    await self._spawn(eid, fields)
            except asyncio.CancelledError:
                raise
            except ResponseError as e:
                if "NOGROUP" in str(e) or "no such key" in str(e).lower():
                    # Redis lost the stream or its group (restart without persistence,
                    # failover): make it again; SQL's sweep re-queues what the inbox lost
                    log.warning("inbox consumer group missing; recreating it")
                    await self.inbox.ensure_group()
                    next_sweep = loop.time()
                    continue
                log.exception("inbox loop error; retrying in 1 s")
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("inbox loop error; retrying in 1 s")
                await asyncio.sleep(1.0)

    async def stop(self, loop_task: asyncio.Task[None] | None = None) -> None:
        """Stop reading new work at once, and cancel work in flight (it is redelivered)."""
        self._stopping = True
        await stop_loop_and_tasks(loop_task, self._tasks)

    async def _read(self) -> list[tuple[str, dict[str, str]]]:
        """The next entries, waiting up to a second for some. A read that leaves nothing in
        the inbox, and whose entries all go in line for a slot at once (ahead of any turn
        that arrives after them), tells the engine the inbox has caught up."""
        mark = self.engine.spill_mark()
        entries = await read_group(
            self.redis, self.inbox.key, GROUP, self.consumer, count=READ_COUNT, block_ms=1000
        )
        if len(entries) >= READ_COUNT or len(entries) > self._room():
            return entries
        if self.engine.inbox_caught_up(mark):
            return entries
        # A turn spilled while the read waited (most likely the one that woke it, or the
        # first of a burst): look once more, without waiting. Caught up only if that finds
        # nothing and no spilled turn was still on its way in when it began.
        mark = self.engine.spill_mark()
        more = await read_group(
            self.redis, self.inbox.key, GROUP, self.consumer,
            count=READ_COUNT - len(entries), block_ms=None,
        )  # fmt: skip
        entries += more
        if not more and len(entries) <= self._room():
            self.engine.inbox_caught_up(mark)
        return entries

    def _room(self) -> int:
        """Entries that could be taken now without waiting for one in hand to finish."""
        return self._most_held - len(self._tasks)

    async def _spawn(self, eid: str, fields: dict[str, str]) -> None:
        await self._held.acquire()
        task = asyncio.create_task(self._handle(eid, fields))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, eid: str, fields: dict[str, str]) -> None:
        conversation_id = fields.get("c", "")
        try:
            if conversation_id:
                async with self._slots:
                    self.handled += await self.engine.process(conversation_id)
            await self._acks.submit(eid)
        except LockTimeout:
            log.warning(
                "conversation busy; entry left for a retry",
                extra={"conversation_id": conversation_id},
            )
        except STORE_UNREACHABLE as e:  # an outage, not a bug: one line, no traceback
            log.warning(
                "engine waits for the database (%r); entry left pending for a retry", e,
                extra={"conversation_id": conversation_id},
            )  # fmt: skip
        except Exception:
            log.exception(
                "engine failed; entry left pending for a retry",
                extra={"conversation_id": conversation_id},
            )
        finally:
            self._held.release()

    async def _ack_many(self, eids: Sequence[str]) -> list[None]:
        await self.redis.xack(self.inbox.key, GROUP, *eids)
        return [None] * len(eids)

    async def _claim_stale(self) -> None:
        """Take over entries another (possibly dead) consumer left unacknowledged."""
        start = "0-0"
        while True:
            resp = await self.redis.xautoclaim(
                self.inbox.key,
                GROUP,
                self.consumer,
                self.claim_idle_ms,
                start_id=start,
                count=50,
            )
            start, entries = str(resp[0]), resp[1]
            for eid, fields in entries:
                if fields:  # None for entries deleted meanwhile
                    log.info(
                        "claimed a stale inbox entry", extra={"conversation_id": fields.get("c")}
                    )
                    await self._spawn(eid, fields)
            if start == "0-0" or not entries:
                return

    async def _sweep(self) -> None:
        """Re-queue messages whose inbox entry was lost. A busy inbox is not a lost one: while
        entries are waiting or in flight, a slow message is simply in line, and re-queueing
        it would only add work to a backlog."""
        if await self._inbox_busy():
            return
        stale = await self.db.unprocessed_customer_messages(older_than_s=self.sweep_older_than_s)
        for conversation_id in dict.fromkeys(m.conversation_id for m in stale):
            log.warning(
                "re-queueing unanswered messages", extra={"conversation_id": conversation_id}
            )
            await self.inbox.enqueue(conversation_id, 0)

    async def _inbox_busy(self) -> bool:
        for group in await self.redis.xinfo_groups(self.inbox.key):
            if group.get("name") == GROUP:
                return bool(group.get("pending")) or bool(group.get("lag"))
        return False
