"""The human-agent queues in Redis: waiting chats, agent presence and atomic claims.

Why Redis and Lua: several gateway replicas (and many agents) act on the same queues at once.
Every change that must not interleave — enqueue/raise, claim, release, transfer — is one Lua
script, so Redis runs it as a single atomic step: two agents can never take the same chat and
an agent can never go over `max_chats`, whatever the concurrency. Reads (`waiting`, `agents`,
`counts`) are plain commands; they may be a moment stale, never inconsistent in a harmful way.

Keys (all under `prefix`, like bot/core/live/keys.py; scripts build names from the prefix, so this
targets a single Redis or the in-process fakeredis stand-in, not Redis Cluster):

    {p}:q:{queue}           ZSET  waiting chats, score = (5 - severity_rank) * 10^13 + enqueued ms
                                  (critical first; within a severity, the oldest first)
    {p}:chat:{id}           HASH  state (waiting|assigned), queue, severity, rank, enqueued_at,
                                  reasons (JSON), language, channel, note, agent, claimed_at
    {p}:assigned            HASH  conversation -> agent
    {p}:agent:{id}          HASH  status, skills (comma-joined queues), max_chats, last_seen,
                                  idle_since
    {p}:agent:{id}:active   SET   the agent's current conversations (its load)
    {p}:agents              SET   every agent that ever set a presence
    {p}:ht:{queue}          LIST  recent waits in ms (claim - enqueue), newest first, capped

Time comes from an injected `clock` (seconds) and is passed into the scripts, so tests can
use fixed clocks and presence expiry never depends on the Redis server's clock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from nlu.triage.triage import severity_rank

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from bot.core.settings import Settings

DEFAULT_QUEUES: tuple[str, ...] = ("safety", "technical", "billing", "orders", "general")
Presence = Literal["online", "away", "offline"]
ClaimFailure = Literal[
    "already_claimed", "not_waiting", "agent_offline", "not_skilled", "at_capacity"
]

# Shared by every script. ARGV[1..4] = prefix, now (ms), presence ttl (ms), history cap.
_LIB = """
local P, NOW, TTL, CAP = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ASSIGNED = P .. ':assigned'
local function fmt(x) return string.format('%.0f', x) end
local function chat_key(c) return P .. ':chat:' .. c end
local function queue_key(q) return P .. ':q:' .. q end
local function agent_key(a) return P .. ':agent:' .. a end
local function active_key(a) return P .. ':agent:' .. a .. ':active' end
local function score(rank, enqueued) return fmt((5 - rank) * 1e13 + enqueued) end

local function online(a)
  local s = redis.call('HMGET', agent_key(a), 'status', 'last_seen')
  return s[1] == 'online' and NOW - tonumber(s[2]) <= TTL
end
local function has_room(a)
  local m = tonumber(redis.call('HGET', agent_key(a), 'max_chats') or '0')
  return redis.call('SCARD', active_key(a)) < m
end
local function skills(a)
  local out = {}
  for q in string.gmatch(redis.call('HGET', agent_key(a), 'skills') or '', '[^,]+') do
    out[#out + 1] = q
  end
  return out
end
local function serves(a, queue)
  for _, q in ipairs(skills(a)) do if q == queue then return true end end
  return false
end
-- Put chat c (waiting or just detached) into queue q at the place its severity and original
-- enqueue time give it: a requeued or transferred chat does not go to the back of the line.
local function wait_in(c, q)
  local d = redis.call('HMGET', chat_key(c), 'rank', 'enqueued_at')
  redis.call('HSET', chat_key(c), 'state', 'waiting', 'queue', q)
  redis.call('HDEL', chat_key(c), 'agent', 'claimed_at')
  redis.call('ZADD', queue_key(q), score(tonumber(d[1]), tonumber(d[2])), c)
end
local function detach(c, a)
  redis.call('HDEL', ASSIGNED, c)
  redis.call('SREM', active_key(a), c)
  redis.call('HSET', agent_key(a), 'idle_since', ARGV[2])
end
local function attach(c, a)
  redis.call('HSET', chat_key(c), 'state', 'assigned', 'agent', a, 'claimed_at', ARGV[2])
  redis.call('HSET', ASSIGNED, c, a)
  redis.call('SADD', active_key(a), c)
  redis.call('HSET', agent_key(a), 'idle_since', ARGV[2])
end
-- Waiting chat c goes to agent a; its wait joins the queue's history for estimates.
local function take(c, a)
  local d = redis.call('HMGET', chat_key(c), 'queue', 'severity', 'enqueued_at')
  redis.call('ZREM', queue_key(d[1]), c)
  attach(c, a)
  local waited = fmt(NOW - tonumber(d[3]))
  redis.call('LPUSH', P .. ':ht:' .. d[1], waited)
  redis.call('LTRIM', P .. ':ht:' .. d[1], 0, CAP - 1)
  return {'ok', c, d[1], d[2], waited}
end
"""

# ARGV[5..] = id, queue ('' keeps the current one), severity, rank, reasons, language,
# channel, mode ('enqueue' | 'raise'). Severity and queue change only when severity rises.
_UPSERT = """
local C, Q, SEV, RANK, MODE = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]), ARGV[12]
local k = chat_key(C)
local d = redis.call('HMGET', k, 'state', 'queue', 'rank')
if d[1] == 'assigned' then return 'assigned' end
if d[1] == 'waiting' then
  if RANK <= tonumber(d[3]) then return 'unchanged' end
  redis.call('ZREM', queue_key(d[2]), C)
  redis.call('HSET', k, 'severity', SEV, 'rank', RANK)
  if MODE == 'enqueue' then redis.call('HSET', k, 'reasons', ARGV[9]) end
  wait_in(C, (Q ~= '' and Q) or d[2])
  return 'raised'
end
if MODE == 'raise' then return 'not_waiting' end
redis.call('HSET', k, 'severity', SEV, 'rank', RANK, 'enqueued_at', ARGV[2],
  'reasons', ARGV[9], 'language', ARGV[10], 'channel', ARGV[11])
wait_in(C, Q)
return 'enqueued'
"""

_REMOVE = """
local d = redis.call('HMGET', chat_key(ARGV[5]), 'state', 'queue')
if d[1] ~= 'waiting' then return 0 end
redis.call('ZREM', queue_key(d[2]), ARGV[5])
redis.call('DEL', chat_key(ARGV[5]))
return 1
"""

_POSITION = """
local d = redis.call('HMGET', chat_key(ARGV[5]), 'state', 'queue')
if d[1] ~= 'waiting' then return nil end
return {d[2], redis.call('ZRANK', queue_key(d[2]), ARGV[5]) + 1}
"""

# ARGV[5] = agent, ARGV[6] = conversation. Checks in the order the failures are reported.
_CLAIM = """
local A, C = ARGV[5], ARGV[6]
local d = redis.call('HMGET', chat_key(C), 'state', 'queue')
if d[1] == 'assigned' then return {'already_claimed', C} end
if d[1] ~= 'waiting' then return {'not_waiting', C} end
if not online(A) then return {'agent_offline', C} end
if not serves(A, d[2]) then return {'not_skilled', C} end
if not has_room(A) then return {'at_capacity', C} end
return take(C, A)
"""

# ARGV[5] = agent. The best chat over the agent's queues: lowest score wins.
_CLAIM_NEXT = """
local A = ARGV[5]
if not online(A) then return {'agent_offline', ''} end
if not has_room(A) then return {'at_capacity', ''} end
local best, best_score = nil, nil
for _, q in ipairs(skills(A)) do
  local top = redis.call('ZRANGE', queue_key(q), 0, 0, 'WITHSCORES')
  if top[1] and (best_score == nil or tonumber(top[2]) < best_score) then
    best, best_score = top[1], tonumber(top[2])
  end
end
if not best then return {'not_waiting', ''} end
return take(best, A)
"""

# ARGV[5] = agent, [6] = conversation, [7] = '1' to requeue (else the chat leaves the queues).
_RELEASE = """
local A, C = ARGV[5], ARGV[6]
if redis.call('HGET', ASSIGNED, C) ~= A then return 0 end
detach(C, A)
if ARGV[7] == '1' then wait_in(C, redis.call('HGET', chat_key(C), 'queue'))
else redis.call('DEL', chat_key(C)) end
return 1
"""

# ARGV[5] = conversation, [6] = to_queue or '', [7] = to_agent or '', [8] = note or ''.
# A transfer to a named agent is a person's explicit choice: presence and capacity are
# checked, skills are not.
_TRANSFER = """
local C, TOQ, TOA = ARGV[5], ARGV[6], ARGV[7]
local d = redis.call('HMGET', chat_key(C), 'state', 'queue', 'severity')
if not d[1] then return {'not_waiting', C} end
local current = redis.call('HGET', ASSIGNED, C)
if TOA ~= '' then
  if current == TOA then return {'already_claimed', C} end
  if not online(TOA) then return {'agent_offline', C} end
  if not has_room(TOA) then return {'at_capacity', C} end
end
if ARGV[8] ~= '' then redis.call('HSET', chat_key(C), 'note', ARGV[8]) end
local q = (TOQ ~= '' and TOQ) or d[2]
if current then detach(C, current) else redis.call('ZREM', queue_key(d[2]), C) end
if current and TOA ~= '' then
  redis.call('HSET', chat_key(C), 'queue', q)
  attach(C, TOA)
  return {'ok', C, q, d[3], ''}
end
wait_in(C, q)
if TOA ~= '' then return take(C, TOA) end
return {'ok', C, q, d[3], ''}
"""


# ARGV[5..] = id, queue, severity, rank, reasons, language, channel, enqueued_at (ms), agent
# or ''. Puts back a chat Redis lost, as SQL has it: in line at its original place, or held
# by its agent. A chat Redis still knows is left alone, so replicas may all run it.
_RESTORE = """
local C, Q, A = ARGV[5], ARGV[6], ARGV[13]
local k = chat_key(C)
if redis.call('EXISTS', k) == 1 then return 'present' end
redis.call('HSET', k, 'queue', Q, 'severity', ARGV[7], 'rank', ARGV[8], 'reasons', ARGV[9],
  'language', ARGV[10], 'channel', ARGV[11], 'enqueued_at', ARGV[12])
if A ~= '' then
  attach(C, A)
  return 'assigned'
end
wait_in(C, Q)
return 'restored'
"""


@dataclass(frozen=True)
class ClaimResult:
    """The outcome of a claim or transfer: ok, or the one reason it was refused."""

    ok: bool
    agent_id: str | None
    conversation_id: str | None = None
    reason: ClaimFailure | None = None
    queue: str | None = None
    severity: str | None = None
    waited_s: float | None = None  # enqueue -> claim, when this claim took a waiting chat

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class WaitingChat:
    conversation_id: str
    queue: str
    severity: str
    enqueued_at: float  # seconds since the epoch
    reasons: tuple[str, ...]
    language: str | None
    channel: str | None
    note: str | None


@dataclass(frozen=True)
class AgentState:
    agent_id: str
    status: Presence  # "offline" once the heartbeat is older than the presence TTL
    skills: tuple[str, ...]
    max_chats: int
    load: int  # active chats
    last_seen: float
    idle_since: float  # last time the agent took or gave up a chat

    @property
    def available(self) -> bool:
        return self.status == "online" and self.load < self.max_chats


class AgentQueues:
    """Waiting queues, agent presence and claims for one deployment (one key prefix)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str = "cl",
        *,
        queues: Sequence[str] = DEFAULT_QUEUES,
        presence_ttl_s: float = 30.0,
        history: int = 50,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if any("," in q or ":" in q for q in queues):
            raise ValueError(f"queue names may not contain ',' or ':': {list(queues)}")
        self.redis = redis
        self.prefix = prefix
        self.queues = tuple(queues)
        self.presence_ttl_s = presence_ttl_s
        self.history = history
        self.clock = clock
        scripts = {
            "upsert": _UPSERT,
            "restore": _RESTORE,
            "remove": _REMOVE,
            "position": _POSITION,
            "claim": _CLAIM,
            "claim_next": _CLAIM_NEXT,
            "release": _RELEASE,
            "transfer": _TRANSFER,
        }
        self._scripts = {n: redis.register_script(_LIB + body) for n, body in scripts.items()}

    @classmethod
    def from_settings(cls, redis: aioredis.Redis, settings: Settings, **kw: Any) -> AgentQueues:
        kw.setdefault("presence_ttl_s", settings.handoff.presence_ttl_s)
        return cls(redis, settings.redis.prefix, queues=settings.triage.queues, **kw)

    # -- keys and plumbing ---------------------------------------------------------------------

    def queue_key(self, queue: str) -> str:
        return f"{self.prefix}:q:{queue}"

    def chat_key(self, conversation_id: str) -> str:
        return f"{self.prefix}:chat:{conversation_id}"

    def agent_key(self, agent_id: str) -> str:
        return f"{self.prefix}:agent:{agent_id}"

    def active_key(self, agent_id: str) -> str:
        return f"{self.prefix}:agent:{agent_id}:active"

    def history_key(self, queue: str) -> str:
        return f"{self.prefix}:ht:{queue}"

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def _run(self, name: str, *args: str | int) -> Any:
        base = (self.prefix, self._now_ms(), int(self.presence_ttl_s * 1000), self.history)
        return await self._scripts[name](args=[*base, *args])

    def _check_queue(self, queue: str) -> None:
        if queue not in self.queues:
            raise ValueError(f"unknown queue {queue!r}; queues are {list(self.queues)}")

    @staticmethod
    def _result(agent_id: str | None, reply: list[str]) -> ClaimResult:
        cid = reply[1] or None
        if reply[0] != "ok":
            return ClaimResult(False, agent_id, cid, reason=reply[0])  # type: ignore[arg-type]
        waited = float(reply[4]) / 1000 if reply[4] else None
        return ClaimResult(True, agent_id, cid, queue=reply[2], severity=reply[3], waited_s=waited)

    # -- waiting queues ------------------------------------------------------------------------

    async def enqueue(
        self,
        conversation_id: str,
        queue: str,
        severity: str,
        *,
        reasons: Sequence[str] = (),
        language: str | None = None,
        channel: str | None = None,
    ) -> str:
        """Put a chat in line. Idempotent: an already waiting chat keeps its enqueue time and
        moves (severity, queue, reasons) only if the severity rises. Returns "enqueued",
        "raised", "unchanged" or "assigned" (already with an agent: left alone)."""
        self._check_queue(queue)
        rank = severity_rank(severity)
        return str(
            await self._run(
                "upsert", conversation_id, queue, severity, rank,
                json.dumps(list(reasons), ensure_ascii=False), language or "", channel or "",
                "enqueue",
            )
        )  # fmt: skip

    async def restore(
        self,
        conversation_id: str,
        queue: str,
        severity: str,
        *,
        enqueued_at: float,
        agent_id: str | None = None,
        reasons: Sequence[str] = (),
        language: str | None = None,
        channel: str | None = None,
    ) -> str:
        """Put back a chat Redis no longer has (waiting at its original place, or held by
        `agent_id`). "present" when Redis still had it: nothing changes."""
        self._check_queue(queue)
        return str(
            await self._run(
                "restore", conversation_id, queue, severity, severity_rank(severity),
                json.dumps(list(reasons), ensure_ascii=False), language or "", channel or "",
                int(enqueued_at * 1000), agent_id or "",
            )
        )  # fmt: skip

    async def known(self, conversation_ids: Sequence[str]) -> set[str]:
        """Which of these chats Redis has (waiting or held)."""
        if not conversation_ids:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in conversation_ids:
                pipe.exists(self.chat_key(c))
            found = await pipe.execute()
        return {c for c, n in zip(conversation_ids, found, strict=True) if n}

    async def raise_priority(self, conversation_id: str, severity: str) -> bool:
        """Raise a waiting chat's severity in its queue (never lowers it). True if it moved."""
        rank = severity_rank(severity)
        reply = await self._run("upsert", conversation_id, "", severity, rank, "", "", "", "raise")
        return reply == "raised"

    async def remove(self, conversation_id: str) -> bool:
        """Take a waiting chat out of line (the customer left, or the bot solved it)."""
        return bool(await self._run("remove", conversation_id))

    async def position(self, conversation_id: str) -> tuple[str, int] | None:
        """(queue, 1-based place in it), or None if the chat is not waiting."""
        reply = await self._run("position", conversation_id)
        return (reply[0], int(reply[1])) if reply else None

    async def waiting(self, queue: str, limit: int = 50) -> list[WaitingChat]:
        """The first `limit` chats of a queue, in the order agents will get them."""
        self._check_queue(queue)
        if limit <= 0:
            return []
        ids = await self.redis.zrange(self.queue_key(queue), 0, limit - 1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.hgetall(self.chat_key(cid))
            details = await pipe.execute()
        return [_waiting_chat(c, d) for c, d in zip(ids, details, strict=True) if d]

    async def counts(self) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for q in self.queues:
                pipe.zcard(self.queue_key(q))
            sizes = await pipe.execute()
        return dict(zip(self.queues, sizes, strict=True))

    # -- claims --------------------------------------------------------------------------------

    async def claim(self, agent_id: str, conversation_id: str) -> ClaimResult:
        """An agent picks a specific chat (atomic: see _CLAIM)."""
        return self._result(agent_id, await self._run("claim", agent_id, conversation_id))

    async def claim_next(self, agent_id: str) -> ClaimResult:
        """An agent takes the most urgent, then oldest, chat among the queues it serves."""
        return self._result(agent_id, await self._run("claim_next", agent_id))

    async def release(self, agent_id: str, conversation_id: str, *, requeue: bool = False) -> bool:
        """The agent lets go: back to its queue at its old place (`requeue`), or back to the
        bot (the chat leaves the queues). False if the agent did not hold the chat."""
        return bool(await self._run("release", agent_id, conversation_id, "1" if requeue else "0"))

    async def resolve(self, agent_id: str, conversation_id: str) -> bool:
        """The conversation is done: frees the agent's capacity. False if not the agent's."""
        return bool(await self._run("release", agent_id, conversation_id, "0"))

    async def transfer(
        self,
        conversation_id: str,
        *,
        to_queue: str | None = None,
        to_agent: str | None = None,
        note: str | None = None,
    ) -> ClaimResult:
        """Move a waiting or assigned chat to another queue (it keeps its place by severity and
        original wait) and/or straight to a named agent (online and with room; skills are
        not checked — a person chose that agent)."""
        if to_queue is None and to_agent is None:
            raise ValueError("transfer needs to_queue or to_agent")
        if to_queue is not None:
            self._check_queue(to_queue)
        args = (conversation_id, to_queue or "", to_agent or "", note or "")
        return self._result(to_agent, await self._run("transfer", *args))

    # -- presence ------------------------------------------------------------------------------

    async def set_presence(
        self, agent_id: str, status: Presence, *, skills: Sequence[str], max_chats: int
    ) -> None:
        """Announce an agent's status, the queues it serves and how many chats it can hold.
        Counts as a heartbeat."""
        if status not in ("online", "away", "offline"):
            raise ValueError(f"unknown presence {status!r}")
        for q in skills:
            self._check_queue(q)
        now = str(self._now_ms())
        key = self.agent_key(agent_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"status": status, "skills": ",".join(skills),
                                    "max_chats": max_chats, "last_seen": now})  # fmt: skip
            pipe.hsetnx(key, "idle_since", now)
            pipe.sadd(f"{self.prefix}:agents", agent_id)
            await pipe.execute()

    async def heartbeat(self, agent_id: str) -> bool:
        """Keep an agent's presence fresh; without one within presence_ttl_s it counts as
        offline. False for an agent that never set a presence."""
        key = self.agent_key(agent_id)
        if not await self.redis.exists(key):
            return False
        await self.redis.hset(key, "last_seen", str(self._now_ms()))
        return True

    async def agents(self) -> list[AgentState]:
        ids = sorted(await self.redis.smembers(f"{self.prefix}:agents"))
        async with self.redis.pipeline(transaction=False) as pipe:
            for a in ids:
                pipe.hgetall(self.agent_key(a))
                pipe.scard(self.active_key(a))
            replies = await pipe.execute()
        now = self._now_ms()
        ttl = self.presence_ttl_s * 1000
        return [
            _agent_state(a, replies[2 * i], replies[2 * i + 1], now, ttl)
            for i, a in enumerate(ids)
            if replies[2 * i]
        ]

    async def assign_waiting(self) -> list[tuple[str, str]]:
        """Hand waiting chats, most urgent first, to the least-loaded online agent serving the
        queue (ties: idle longest). Each hand-over is the atomic claim, so this may run on
        several replicas at once. Stops when no eligible agent has room."""
        pool = {a.agent_id: a for a in await self.agents() if a.available}
        done: list[tuple[str, str]] = []
        for cid, queue in await self._all_waiting({q for a in pool.values() for q in a.skills}):
            for agent in sorted(
                (a for a in pool.values() if queue in a.skills),
                key=lambda a: (a.load, a.idle_since, a.agent_id),
            ):
                result = await self.claim(agent.agent_id, cid)
                if result.ok:
                    done.append((cid, agent.agent_id))
                    _bump(pool, agent, self.clock())
                    break
                if result.reason in ("already_claimed", "not_waiting"):
                    break
                del pool[agent.agent_id]  # offline or full meanwhile
            if not pool:
                break
        return done

    async def _all_waiting(self, queues: set[str]) -> list[tuple[str, str]]:
        """(conversation, queue) over `queues`, in global priority order."""
        scored: list[tuple[float, str, str]] = []
        for q in sorted(queues):
            for cid, score in await self.redis.zrange(self.queue_key(q), 0, -1, withscores=True):
                scored.append((score, cid, q))
        return [(cid, q) for _, cid, q in sorted(scored)]

    # -- estimates -----------------------------------------------------------------------------

    async def estimated_wait_s(self, conversation_id: str) -> float | None:
        """Rough seconds until an agent takes this chat, or None (not waiting, no history).

        Formula: W * position / length, where W is the mean wait (claim - enqueue) of the
        queue's recent claims and length is the queue's current size. By Little's law a queue
        of length L whose chats wait W is served at about L / W chats per second, so the chat
        at `position` is reached after position * W / L; the last in line waits about W, as
        recent customers did."""
        pos = await self.position(conversation_id)
        if pos is None:
            return None
        queue, place = pos
        waits = await self.redis.lrange(self.history_key(queue), 0, -1)
        if not waits:
            return None
        mean_s = sum(float(w) for w in waits) / len(waits) / 1000
        length = max(await self.redis.zcard(self.queue_key(queue)), place)
        return mean_s * place / length


def _bump(pool: dict[str, AgentState], agent: AgentState, now: float) -> None:
    """Count one more chat for `agent` locally; drop it from the pool when full."""
    load = agent.load + 1
    if load >= agent.max_chats:
        del pool[agent.agent_id]
    else:
        pool[agent.agent_id] = AgentState(
            agent.agent_id, agent.status, agent.skills, agent.max_chats, load,
            agent.last_seen, now,
        )  # fmt: skip


def _waiting_chat(cid: str, d: dict[str, str]) -> WaitingChat:
    return WaitingChat(
        conversation_id=cid,
        queue=d["queue"],
        severity=d["severity"],
        enqueued_at=int(d["enqueued_at"]) / 1000,
        reasons=tuple(json.loads(d.get("reasons") or "[]")),
        language=d.get("language") or None,
        channel=d.get("channel") or None,
        note=d.get("note") or None,
    )


def _agent_state(agent_id: str, d: dict[str, str], load: int, now: int, ttl: float) -> AgentState:
    last_seen = int(d.get("last_seen", "0"))
    status = d.get("status", "offline")
    if now - last_seen > ttl:
        status = "offline"
    return AgentState(
        agent_id=agent_id,
        status=status,  # type: ignore[arg-type]
        skills=tuple(s for s in d.get("skills", "").split(",") if s),
        max_chats=int(d.get("max_chats", "0")),
        load=load,
        last_seen=last_seen / 1000,
        idle_since=int(d.get("idle_since", "0")) / 1000,
    )
