"""The quick safety question: what the bot does when a hazard is possible but not certain.

Triage marks a message `ask` when the learned model sees real evidence of danger that is not
decisive ("sạc mà sợ nổ quá", "it's charging and getting weirdly hot"). Paging the safety
team for every such message would bury the real ones; ignoring them would miss some. So the
bot gives the first safety step at once and asks one yes/no question. Yes, or no answer
within `careline.triage.model.ask_timeout_s`, sends the chat to the safety queue; no lets
the conversation go on.

A pending question lives in the conversation's bot-state hash (what was asked, about which
message) and in one sorted set of deadlines that every replica's timer polls; the question
and its outcome are also written to SQL as escalation records, so the agent who picks the
chat up sees why it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from bot.core.live.keys import Keys
from nlu.vi.text import fold

log = logging.getLogger("careline.safety_check")

YES = "safety:yes"
NO = "safety:no"
FIELD = "safety_check"  # in the conversation's bot-state hash

# Folded first words of a short typed answer ("có", "ko", "không sao", "no, it's fine").
_YES_WORDS = frozenset(
    ["co", "yes", "y", "yep", "yeah", "ya", "yup", "dung", "phong", "khoi", "khet", "nong"]
)
_NO_WORDS = frozenset(["khong", "ko", "k", "kg", "kh", "hong", "hok", "khum", "no", "nope", "nah"])
_WORD = re.compile(r"[a-z]+")


def answer_of(text: str, payload: str | None) -> bool | None:
    """True (yes), False (no) or None (not an answer) for a reply to the safety question.

    The buttons are exact; typed text counts only when it is short and plainly one or the
    other ("có", "ko", "no, it's fine"), so a new question is never read as an answer."""
    if payload == YES:
        return True
    if payload == NO:
        return False
    words = _WORD.findall(fold(text))
    if not words or len(words) > 6:
        return None
    if words[0] in _NO_WORDS:
        return False
    if words[0] in _YES_WORDS:
        return True
    return None


@dataclass(frozen=True)
class PendingCheck:
    message_id: int  # the customer message that raised the question
    intent: str | None
    confidence: float
    reason: str
    deadline: float  # epoch seconds

    def dumps(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False)

    @classmethod
    def loads(cls, raw: str | bytes | None) -> PendingCheck | None:
        if not raw:
            return None
        try:
            return cls(**json.loads(raw))
        except (TypeError, ValueError):
            return None


class SafetyChecks:
    """Pending safety questions: per conversation, plus one deadline set for the timers."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, timeout_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.timeout_s = timeout_s

    async def open(
        self, conversation_id: str, message_id: int, intent: str | None, confidence: float,
        reason: str,
    ) -> PendingCheck:  # fmt: skip
        check = PendingCheck(message_id, intent, confidence, reason, time.time() + self.timeout_s)
        async with self.redis.pipeline(transaction=True) as p:
            p.hset(self.keys.bot_state(conversation_id), FIELD, check.dumps())
            p.zadd(self.keys.safety_checks(), {conversation_id: check.deadline}, nx=True)
            await p.execute()
        return check

    async def restore(self, conversation_id: str, check: PendingCheck) -> bool:
        """Put back a question Redis lost, unless one is pending already (True if put back)."""
        async with self.redis.pipeline(transaction=True) as p:
            p.hsetnx(self.keys.bot_state(conversation_id), FIELD, check.dumps())
            p.zadd(self.keys.safety_checks(), {conversation_id: check.deadline}, nx=True)
            added, _ = await p.execute()
        return bool(added)

    async def pending(self, conversation_id: str) -> PendingCheck | None:
        return PendingCheck.loads(
            await self.redis.hget(self.keys.bot_state(conversation_id), FIELD)
        )

    async def close(self, conversation_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as p:
            p.hdel(self.keys.bot_state(conversation_id), FIELD)
            p.zrem(self.keys.safety_checks(), conversation_id)
            await p.execute()

    async def due(self, limit: int = 100) -> list[str]:
        """Conversations whose question has gone unanswered past its deadline."""
        raw = await self.redis.zrangebyscore(
            self.keys.safety_checks(), "-inf", time.time(), start=0, num=limit
        )
        return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]


class SafetyCheckTimer:
    """Every replica polls the deadlines; the engine's handler is idempotent and takes the
    conversation's lock, so two replicas firing at once escalate once.

    At start and every `recover_every_s` it also calls `recover`, which puts back from SQL
    the questions a Redis restart or failover lost."""

    def __init__(
        self, checks: SafetyChecks, on_timeout: Callable[[str], Awaitable[None]],
        every_s: float = 1.0, recover: Callable[[], Awaitable[int]] | None = None,
        recover_every_s: float = 10.0,
    ) -> None:  # fmt: skip
        self.checks = checks
        self.on_timeout = on_timeout
        self.every_s = every_s
        self.recover = recover
        self.recover_every_s = recover_every_s
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        next_recovery = 0.0
        while not self._stop.is_set():
            if self.recover is not None and time.monotonic() >= next_recovery:
                next_recovery = time.monotonic() + self.recover_every_s
                try:
                    await self.recover()
                except Exception:  # SQL or Redis down: the deadlines below still fire
                    log.exception("restoring safety questions failed; retrying next pass")
            try:
                for conversation_id in await self.checks.due():
                    await self.on_timeout(conversation_id)
            except Exception:  # a Redis hiccup must not end the timer
                log.exception("safety question timer failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.every_s)


__all__ = ["NO", "YES", "PendingCheck", "SafetyCheckTimer", "SafetyChecks", "answer_of"]
