"""The Telegram outbox: delivers every stored bot/agent/system message to the customer's chat,
in order, through Telegram outages, rate limits and crashes.

Wake-ups arrive on `<prefix>:outbox:telegram` (bot/core/live/outbound.py), a Redis stream read
through the consumer group `telegram`, so replicas share the work and a killed replica's
unacknowledged entries are claimed by another. A wake-up only names a conversation: what to
send is read from SQL (messages without a `delivered` row in telegram_delivery), so a lost or
repeated wake-up costs a delay or a no-op, never a message. A per-conversation Redis lock keeps
one sender per chat, which keeps the order.

Failures:
- 429 RetryAfter: the chat is held for exactly the time Telegram asks, then retried.
- network errors, timeouts, 5xx: retried with exponential backoff (never given up: an outage
  delays messages but loses none). Retries wait in a Redis sorted set and are put back on the
  stream when due; an SQL sweep re-wakes conversations whose wake-up vanished altogether.
- 403 (bot blocked, user deactivated) or "chat not found": the customer is marked unreachable
  and nothing more is tried until they write again.
- any other 400 for one message: that message is recorded as failed (with Telegram's reason)
  and the next one goes out, instead of blocking the chat forever.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import warnings
from dataclasses import dataclass
from datetime import timedelta

import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import (
    BadRequest,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.warnings import PTBDeprecationWarning

from bot.channels.telegram.ledger import DELIVERED, FAILED, SENDING, DeliveryLedger
from bot.channels.telegram.metrics import (
    TELEGRAM_DELIVERY_LAG,
    TELEGRAM_RETRIES,
    TELEGRAM_SEND_ERRORS,
    TELEGRAM_SENT,
    TELEGRAM_UNREACHABLE,
)
from bot.channels.telegram.split import split_text
from bot.core.live.locks import LockTimeout, redis_lock
from bot.core.live.outbound import Outbound
from bot.core.live.streams import ensure_group, read_group, trim_acknowledged
from bot.core.live.tasks import stop_loop_and_tasks
from bot.core.settings import TelegramOutboxSettings
from bot.core.store.db import Database
from bot.core.store.models import Customer, Message, utcnow

log = logging.getLogger("careline.telegram.sender")

CHANNEL = "telegram"
GROUP = "telegram"
MAX_BUTTONS = 20
LOCK_TTL_MS = 180_000  # longer than a whole delivery: a few parts, each bounded by a timeout
UNREACHABLE_REASONS = ("chat not found", "user not found", "bot was blocked", "deactivated")

# Move due retries back onto the stream, atomically, so exactly one replica releases each.
_RELEASE_DUE = """
local due = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 200)
for _, c in ipairs(due) do
  redis.call('zrem', KEYS[1], c)
  redis.call('xadd', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'conversation_id', c)
end
return #due
"""


def quick_reply_data(message_id: int, index: int) -> str:
    """callback_data of a quick-reply button: it names the offered option, never the payload
    itself, so a modified client can only pick what we offered (and data stays ≤ 64 bytes)."""
    return f"q:{message_id}:{index}"


def keyboard(message: Message) -> InlineKeyboardMarkup | None:
    quick = (message.payload or {}).get("quick_replies") or []
    rows = [
        [
            InlineKeyboardButton(
                str(q.get("title") or "?")[:120], callback_data=quick_reply_data(message.id, i)
            )
        ]
        for i, q in enumerate(quick[:MAX_BUTTONS])
        if isinstance(q, dict)
    ]
    return InlineKeyboardMarkup(rows) if rows else None


def retry_after_s(error: RetryAfter) -> float:
    """RetryAfter.retry_after is seconds (int) today and a timedelta in PTB's next major
    version; accept both without the deprecation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt left to do."""

    sent: int = 0  # parts sent
    retry_in: float | None = None  # None: nothing left (or nothing possible) for now
    blocked: bool = False


class TelegramSender:
    def __init__(
        self,
        *,
        bot: Bot,
        redis: aioredis.Redis,
        outbound: Outbound,
        db: Database,
        ledger: DeliveryLedger,
        cfg: TelegramOutboxSettings,
        consumer: str,
        ready: asyncio.Event,
    ) -> None:
        self.bot = bot
        self.redis = redis
        self.outbound = outbound
        self.db = db
        self.ledger = ledger
        self.cfg = cfg
        self.consumer = consumer
        self.ready = ready
        self.stream = outbound.outbox(CHANNEL)
        keys = outbound.keys
        self.retry_key = keys.telegram_retries
        self.attempts_key = keys.telegram_attempts
        self.hold_prefix = keys.telegram_hold_prefix
        self.lock_prefix = keys.telegram_delivery_lock_prefix
        self._slots = asyncio.Semaphore(cfg.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[str, bool] = {}  # conversation -> "woken again meanwhile"
        self._stopping = False

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        await self.ready.wait()  # the Bot API client is initialised
        await self._ensure_group()
        loop = asyncio.get_running_loop()
        next_claim = next_sweep = next_release = loop.time()
        block_ms = max(10, int(self.cfg.poll_s * 1000))
        while not self._stopping:
            try:
                now = loop.time()
                if now >= next_release:
                    await self._release_due()
                    next_release = now + self.cfg.poll_s
                if now >= next_claim:
                    await self._claim_stale()
                    await trim_acknowledged(self.redis, self.stream, GROUP)
                    next_claim = now + max(1.0, self.cfg.claim_idle_s / 3)
                if now >= next_sweep:
                    await self._sweep()
                    next_sweep = now + self.cfg.sweep_every_s
                for eid, fields in await read_group(
                    self.redis, self.stream, GROUP, self.consumer, count=32, block_ms=block_ms
                ):
                    await self._spawn(eid, fields.get("conversation_id", ""))
            except asyncio.CancelledError:
                raise
            except ResponseError as e:
                if "NOGROUP" in str(e) or "no such key" in str(e).lower():
                    log.warning("telegram outbox consumer group missing; recreating it")
                    await self._ensure_group()
                    continue
                log.exception("telegram outbox loop error; retrying in 1 s")
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("telegram outbox loop error; retrying in 1 s")
                await asyncio.sleep(1.0)

    async def stop(self, loop_task: asyncio.Task[None] | None = None) -> None:
        self._stopping = True
        await stop_loop_and_tasks(loop_task, self._tasks)

    async def _ensure_group(self) -> None:
        await ensure_group(self.redis, self.stream, GROUP)

    async def _spawn(self, eid: str, conversation_id: str) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(eid, conversation_id), name="telegram-deliver")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, eid: str, conversation_id: str) -> None:
        try:
            if conversation_id:
                await self.wake(conversation_id)
            await self.redis.xack(self.stream, GROUP, eid)
        except Exception:
            log.exception(
                "telegram delivery failed; entry left pending for a retry",
                extra={"conversation_id": conversation_id, "channel": CHANNEL},
            )
        finally:
            self._slots.release()

    async def wake(self, conversation_id: str) -> None:
        """Deliver what is due for this conversation, or schedule when to try again.

        Wake-ups for a conversation this replica is already delivering are folded into the
        running delivery (it looks again when done) instead of queueing on the lock.
        """
        if conversation_id in self._running:
            self._running[conversation_id] = True
            return
        self._running[conversation_id] = False
        try:
            while True:
                await self._deliver_or_schedule(conversation_id)
                if not self._running[conversation_id]:
                    return
                self._running[conversation_id] = False
        finally:
            del self._running[conversation_id]

    async def _deliver_or_schedule(self, conversation_id: str) -> None:
        hold_ms = await self.redis.pttl(self.hold_prefix + conversation_id)
        if hold_ms > 0:  # Telegram asked us to wait (RetryAfter): the retry is scheduled
            await self._schedule(conversation_id, hold_ms / 1000)
            return
        try:
            async with redis_lock(
                self.redis, self.lock_prefix + conversation_id, ttl_ms=LOCK_TTL_MS, wait_s=1.0
            ):
                outcome = await self.deliver(conversation_id)
        except LockTimeout:  # another replica is delivering it; look again shortly
            await self._schedule(conversation_id, 1.0)
            return
        if outcome.retry_in is not None:
            await self._schedule(conversation_id, outcome.retry_in)

    async def _schedule(self, conversation_id: str, delay_s: float) -> None:
        TELEGRAM_RETRIES.inc()
        await self.redis.zadd(self.retry_key, {conversation_id: time.time() + delay_s})

    async def _release_due(self) -> None:
        await self.redis.eval(
            _RELEASE_DUE, 2, self.retry_key, self.stream, time.time(), self.outbound.maxlen
        )

    async def _claim_stale(self) -> None:
        start = "0-0"
        idle_ms = int(self.cfg.claim_idle_s * 1000)
        while True:
            resp = await self.redis.xautoclaim(
                self.stream, GROUP, self.consumer, idle_ms, start_id=start, count=50
            )
            start, entries = str(resp[0]), resp[1]
            for eid, fields in entries:
                if fields:
                    log.info(
                        "claimed a stale telegram delivery",
                        extra={"conversation_id": fields.get("conversation_id")},
                    )
                    await self._spawn(eid, fields.get("conversation_id", ""))
            if start == "0-0" or not entries:
                return

    async def _sweep(self) -> None:
        """Re-wake conversations with old undelivered messages whose wake-up was lost."""
        lagging = await self.ledger.lagging_conversations(settled_s=self.cfg.sweep_settle_s)
        for conversation_id in lagging:
            if await self.redis.zscore(self.retry_key, conversation_id) is not None:
                continue  # waiting for its retry: not lost
            log.warning(
                "re-waking an undelivered telegram conversation",
                extra={"conversation_id": conversation_id, "channel": CHANNEL},
            )
            await self.outbound.notify(CHANNEL, conversation_id)

    # -- one conversation -------------------------------------------------------------------

    async def deliver(self, conversation_id: str) -> Outcome:
        """Send the conversation's undelivered messages in order; hold the lock to call."""
        customer = await self.ledger.recipient(conversation_id)
        if customer is None or customer.unreachable:
            return Outcome()
        ctx = {"conversation_id": conversation_id, "channel": CHANNEL}
        sent = 0
        while True:
            pending = await self.ledger.undelivered(conversation_id)
            if not pending:
                await self.redis.hdel(self.attempts_key, conversation_id)
                return Outcome(sent)
            for message, parts_sent in pending:
                parts = split_text(message.text) or ["…"]  # Telegram refuses empty messages
                for i in range(parts_sent, len(parts)):
                    last = i == len(parts) - 1
                    try:
                        await self.bot.send_message(
                            chat_id=customer.external_id,
                            text=parts[i],
                            reply_markup=keyboard(message) if last else None,
                        )
                    except RetryAfter as e:
                        wait = max(0.0, retry_after_s(e))
                        TELEGRAM_SEND_ERRORS.labels("retry_after").inc()
                        log.warning("telegram asks to wait %.1f s", wait, extra=ctx)
                        await self.redis.set(
                            self.hold_prefix + conversation_id, "1", px=max(1, int(wait * 1000))
                        )
                        return Outcome(sent, retry_in=wait)
                    except Forbidden as e:
                        await self._unreachable(customer, str(e), ctx)
                        return Outcome(sent, blocked=True)
                    except BadRequest as e:
                        if any(r in str(e).lower() for r in UNREACHABLE_REASONS):
                            await self._unreachable(customer, str(e), ctx)
                            return Outcome(sent, blocked=True)
                        TELEGRAM_SEND_ERRORS.labels("rejected").inc()
                        log.error("telegram rejected message %s: %s", message.id, e, extra=ctx)
                        await self.ledger.record(message, i, FAILED, str(e)[:500])
                        break  # on to the next message
                    except (NetworkError, TelegramError) as e:  # incl. timeouts and 5xx
                        return Outcome(sent, retry_in=await self._backoff(conversation_id, e))
                    sent += 1
                    TELEGRAM_SENT.inc()
                    await self.ledger.record(message, i + 1, DELIVERED if last else SENDING)
                    if last:
                        lag = (utcnow() - message.created_at).total_seconds()
                        TELEGRAM_DELIVERY_LAG.observe(max(0.0, lag))

    async def _backoff(self, conversation_id: str, error: Exception) -> float:
        failures = int(await self.redis.hincrby(self.attempts_key, conversation_id, 1))
        delay = min(self.cfg.retry_max_s, self.cfg.retry_base_s * 2 ** (failures - 1))
        delay *= random.uniform(0.8, 1.2)  # replicas retrying after an outage don't stampede
        kind = "timeout" if isinstance(error, TimedOut) else "network"  # network: also 5xx
        TELEGRAM_SEND_ERRORS.labels(kind).inc()
        log.warning(
            "telegram send failed (%s, failure %d in a row); retrying in %.2f s",
            error,
            failures,
            delay,
            extra={"conversation_id": conversation_id, "channel": CHANNEL},
        )
        return delay

    async def _unreachable(self, customer: Customer, reason: str, ctx: dict[str, str]) -> None:
        TELEGRAM_SEND_ERRORS.labels("blocked").inc()
        TELEGRAM_UNREACHABLE.inc()
        log.warning("customer unreachable on telegram (%s); not retrying", reason, extra=ctx)
        await self.db.update_customer(customer.id, unreachable=True)
