"""The agent queues on a real Redis and on the embedded stand-in (fakeredis): priority order,
idempotent enqueue, atomic claims under heavy concurrency, capacity, skills, presence,
automatic assignment, release/transfer/resolve bookkeeping and the wait estimate."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import uuid4

import fakeredis
import pytest
import redis.asyncio as aioredis

from handoff.queues import DEFAULT_QUEUES, AgentQueues
from nlu.triage.triage import SEVERITIES, severity_rank

T0 = 1_700_000_000.0


class Clock:
    """A clock that only moves when told to."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Env:
    q: AgentQueues
    clock: Clock
    kind: str

    @property
    def redis(self) -> aioredis.Redis:
        return self.q.redis

    async def agent(self, name: str, *, skills=DEFAULT_QUEUES, max_chats: int = 5) -> str:  # type: ignore[no-untyped-def]
        await self.q.set_presence(name, "online", skills=list(skills), max_chats=max_chats)
        return name


@pytest.fixture(params=["redis", "fakeredis"])
async def env(request, redis_client: aioredis.Redis) -> AsyncIterator[Env]:  # type: ignore[no-untyped-def]
    fake = request.param == "fakeredis"
    client = fakeredis.FakeAsyncRedis(decode_responses=True) if fake else redis_client
    prefix = f"t{uuid4().hex[:10]}"
    clock = Clock()
    yield Env(AgentQueues(client, prefix, clock=clock), clock, request.param)
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    if fake:
        await client.aclose()


# -- waiting queues ------------------------------------------------------------------------------


async def test_critical_first_then_oldest(env: Env) -> None:
    for cid, severity in [("a", "low"), ("b", "high"), ("c", "critical"), ("d", "high")]:
        await env.q.enqueue(cid, "technical", severity, reasons=[f"r-{cid}"], language="vi")
        env.clock.advance(1)
    chats = await env.q.waiting("technical", 10)
    assert [c.conversation_id for c in chats] == ["c", "b", "d", "a"]
    assert chats[0].severity == "critical" and chats[0].reasons == ("r-c",)
    assert chats[0].language == "vi" and chats[0].enqueued_at == T0 + 2
    assert await env.q.position("a") == ("technical", 4)
    assert await env.q.position("c") == ("technical", 1)
    assert await env.q.position("nobody") is None
    assert [c.conversation_id for c in await env.q.waiting("technical", 2)] == ["c", "b"]
    assert (await env.q.counts())["technical"] == 4


async def test_enqueue_is_idempotent_and_keeps_the_original_time(env: Env) -> None:
    assert await env.q.enqueue("x", "technical", "normal", channel="widget") == "enqueued"
    env.clock.advance(60)
    assert await env.q.enqueue("x", "technical", "normal") == "unchanged"
    assert await env.q.enqueue("x", "billing", "low") == "unchanged"
    assert await env.q.counts() == {"safety": 0, "technical": 1, "billing": 0, "orders": 0,
                                    "general": 0}  # fmt: skip
    assert await env.q.enqueue("x", "safety", "critical", reasons=["nổ"]) == "raised"
    [chat] = await env.q.waiting("safety")
    assert (chat.severity, chat.enqueued_at, chat.reasons) == ("critical", T0, ("nổ",))
    assert chat.channel == "widget"
    assert (await env.q.counts())["technical"] == 0
    with pytest.raises(ValueError):
        await env.q.enqueue("y", "nowhere", "low")
    with pytest.raises(ValueError):
        await env.q.enqueue("y", "general", "urgent")


async def test_raise_priority_moves_a_chat_up_and_remove(env: Env) -> None:
    for cid in "abc":
        await env.q.enqueue(cid, "orders", "normal")
        env.clock.advance(1)
    assert await env.q.position("c") == ("orders", 3)
    assert await env.q.raise_priority("c", "high")
    assert await env.q.position("c") == ("orders", 1)
    assert not await env.q.raise_priority("c", "low")  # never lowered
    assert not await env.q.raise_priority("nobody", "critical")
    assert await env.q.remove("a")
    assert not await env.q.remove("a")
    assert [c.conversation_id for c in await env.q.waiting("orders")] == ["c", "b"]


# -- races -----------------------------------------------------------------------------------------


def _sizes(env: Env) -> tuple[int, int]:
    """(agents, chats): the full race on Redis, a smaller one on the embedded stand-in."""
    return (50, 1000) if env.kind == "redis" else (10, 100)


async def _fill(env: Env, n: int) -> dict[str, tuple[int, float]]:
    """n chats over every queue and severity; returns each chat's (rank, enqueued_at)."""
    rng = random.Random(7)
    out: dict[str, tuple[int, float]] = {}
    for i in range(n):
        cid, sev = f"c{i:04d}", rng.choice(SEVERITIES)
        await env.q.enqueue(cid, rng.choice(DEFAULT_QUEUES), sev)
        out[cid] = (severity_rank(sev), env.clock())
        env.clock.advance(0.001)
    return out


async def _race(env: Env, agents: list[str]) -> dict[str, list[str]]:
    """Every agent loops on claim_next until refused; returns what each one got."""
    got: dict[str, list[str]] = {a: [] for a in agents}

    async def work(agent: str) -> None:
        while (r := await env.q.claim_next(agent)).ok:
            assert r.conversation_id is not None
            got[agent].append(r.conversation_id)

    await asyncio.gather(*(work(a) for a in agents))
    return got


async def _loads(env: Env, agents: list[str]) -> list[int]:
    return [await env.redis.scard(env.q.active_key(a)) for a in agents]


async def test_race_claim_next_every_chat_exactly_once(env: Env) -> None:
    n_agents, n_chats = _sizes(env)
    chats = await _fill(env, n_chats)
    per_agent = 2 * n_chats // n_agents  # twice the fair share: total capacity is ample
    agents = [await env.agent(f"a{i}", max_chats=per_agent) for i in range(n_agents)]
    got = await _race(env, agents)
    claimed = [c for cs in got.values() for c in cs]
    assert len(claimed) == len(set(claimed)) == n_chats
    assert set(claimed) == set(chats)
    assert sum((await env.q.counts()).values()) == 0
    assert sum(await _loads(env, agents)) == n_chats
    assert await env.redis.hlen(f"{env.q.prefix}:assigned") == n_chats
    for cs in got.values():  # each agent always took the best chat left at that moment
        order = [(-chats[c][0], chats[c][1]) for c in cs]
        assert order == sorted(order)


async def test_race_for_one_chat_has_one_winner(env: Env) -> None:
    agents = [await env.agent(f"a{i}") for i in range(50)]
    await env.q.enqueue("hot", "safety", "critical")
    results = await asyncio.gather(*(env.q.claim(a, "hot") for a in agents))
    assert sum(r.ok for r in results) == 1
    assert Counter(r.reason for r in results if not r.ok) == {"already_claimed": 49}
    winner = next(r.agent_id for r in results if r.ok)
    assert await env.redis.hget(f"{env.q.prefix}:assigned", "hot") == winner
    assert sum(await _loads(env, agents)) == 1


async def test_capacity_holds_under_concurrency(env: Env) -> None:
    n_agents, n_chats = _sizes(env)
    await _fill(env, n_chats)
    agents = [await env.agent(f"a{i}", max_chats=3) for i in range(n_agents)]
    got = await _race(env, agents)
    assert all(len(cs) == 3 for cs in got.values())
    assert await _loads(env, agents) == [3] * n_agents  # read back from the store
    assert sum((await env.q.counts()).values()) == n_chats - 3 * n_agents
    assert (await env.q.claim_next(agents[0])).reason == "at_capacity"


# -- skills, presence, assignment ------------------------------------------------------------------


async def test_an_agent_claims_only_from_queues_it_serves(env: Env) -> None:
    billing = await env.agent("bill", skills=["billing"])
    await env.q.enqueue("fire", "safety", "critical")
    assert (await env.q.claim(billing, "fire")).reason == "not_skilled"
    assert (await env.q.claim_next(billing)).reason == "not_waiting"
    safety = await env.agent("safe", skills=["safety"])
    r = await env.q.claim(safety, "fire")
    assert r.ok and (r.queue, r.severity) == ("safety", "critical")
    assert (await env.q.claim(billing, "fire")).reason == "already_claimed"
    assert (await env.q.claim(safety, "nobody")).reason == "not_waiting"


@pytest.mark.parametrize("status", ["away", "offline"])
async def test_away_or_offline_agents_cannot_claim(env: Env, status: str) -> None:
    await env.q.enqueue("x", "general", "low")
    await env.q.set_presence("a", status, skills=["general"], max_chats=3)  # type: ignore[arg-type]
    assert (await env.q.claim("a", "x")).reason == "agent_offline"
    assert (await env.q.claim_next("a")).reason == "agent_offline"
    assert (await env.q.claim_next("never-seen")).reason == "agent_offline"
    assert await env.q.position("x") == ("general", 1)


async def test_presence_expires_without_heartbeat(env: Env) -> None:
    await env.q.enqueue("x", "general", "low")
    agent = await env.agent("a")
    env.clock.advance(31)
    assert (await env.q.claim(agent, "x")).reason == "agent_offline"
    [state] = await env.q.agents()
    assert state.status == "offline" and not state.available
    assert await env.q.heartbeat(agent)
    assert not await env.q.heartbeat("never-seen")
    env.clock.advance(29)
    assert (await env.q.claim(agent, "x")).ok
    [state] = await env.q.agents()
    assert (state.status, state.load, state.max_chats) == ("online", 1, 5)


async def test_assign_waiting_prefers_least_loaded_then_longest_idle(env: Env) -> None:
    for cid in ("p1", "p2", "p3"):
        await env.q.enqueue(cid, "general", "low")
    busy = await env.agent("busy")
    for cid in ("p1", "p2"):
        assert (await env.q.claim(busy, cid)).ok
    env.clock.advance(1)
    await env.agent("medium")
    assert (await env.q.claim("medium", "p3")).ok
    env.clock.advance(1)
    await env.agent("idle")
    await env.q.enqueue("new", "general", "normal")
    assert await env.q.assign_waiting() == [("new", "idle")]
    # idle and medium now both hold 1; medium has been idle longer (since its claim at +1 s).
    env.clock.advance(1)
    await env.q.enqueue("next", "general", "low")
    assert await env.q.assign_waiting() == [("next", "medium")]


async def test_assign_waiting_goes_by_priority_until_no_room(env: Env) -> None:
    await env.agent("a", skills=["technical", "safety"], max_chats=2)
    await env.agent("b", skills=["technical"], max_chats=1)
    await env.q.enqueue("old-low", "technical", "low")
    env.clock.advance(1)
    await env.q.enqueue("fire", "safety", "critical")
    await env.q.enqueue("broken", "technical", "high")
    await env.q.enqueue("late-low", "technical", "low")
    await env.q.enqueue("bill", "billing", "critical")  # nobody serves billing
    pairs = await env.q.assign_waiting()
    assert [c for c, _ in pairs] == ["fire", "broken", "old-low"]
    assert dict(pairs)["fire"] == "a"
    assert Counter(a for _, a in pairs) == {"a": 2, "b": 1}
    assert await env.q.assign_waiting() == []
    assert await env.q.position("late-low") == ("technical", 1)
    assert await env.q.position("bill") == ("billing", 1)


# -- release, transfer, resolve --------------------------------------------------------------------


async def test_release_transfer_resolve_bookkeeping(env: Env) -> None:
    a = await env.agent("a", max_chats=2)
    b = await env.agent("b", max_chats=1)
    for cid in ("x", "y"):
        await env.q.enqueue(cid, "technical", "normal")
        env.clock.advance(1)
    assert (await env.q.claim(a, "x")).ok
    assert not await env.q.release(b, "x")  # not b's chat
    assert await env.q.release(a, "x", requeue=True)  # back at its old place, ahead of y
    assert await env.q.position("x") == ("technical", 1)
    assert await _loads(env, [a]) == [0]

    assert (await env.q.claim(a, "x")).ok
    r = await env.q.transfer("x", to_queue="billing", note="refund question")
    assert r.ok and r.queue == "billing" and await _loads(env, [a]) == [0]
    [chat] = await env.q.waiting("billing")
    assert (chat.note, chat.enqueued_at) == ("refund question", T0)

    assert (await env.q.transfer("x", to_agent=b)).ok  # waiting -> b, skills not checked
    assert (await env.q.transfer("y", to_agent=b)).reason == "at_capacity"
    assert (await env.q.transfer("x", to_agent=b)).reason == "already_claimed"
    assert (await env.q.transfer("x", to_agent=a)).ok  # assigned b -> a
    assert await _loads(env, [a, b]) == [1, 0]
    assert (await env.q.transfer("gone", to_queue="general")).reason == "not_waiting"
    with pytest.raises(ValueError):
        await env.q.transfer("x")

    assert not await env.q.resolve(b, "x")
    assert await env.q.resolve(a, "x")
    assert await _loads(env, [a]) == [0]
    assert await env.q.position("x") is None
    assert not await env.redis.exists(env.q.chat_key("x"))
    assert await env.q.enqueue("x", "general", "low") == "enqueued"  # can come back later


async def test_release_to_the_bot_and_enqueue_of_an_assigned_chat(env: Env) -> None:
    a = await env.agent("a")
    await env.q.enqueue("x", "orders", "low")
    assert (await env.q.claim(a, "x")).ok
    assert await env.q.enqueue("x", "orders", "critical") == "assigned"
    assert await env.q.release(a, "x")
    assert await env.q.position("x") is None
    assert await _loads(env, [a]) == [0]


# -- estimated wait --------------------------------------------------------------------------------


async def test_estimated_wait_from_position_and_recent_waits(env: Env) -> None:
    a = await env.agent("a", max_chats=10)
    await env.q.enqueue("first", "general", "low")
    assert await env.q.estimated_wait_s("first") is None  # no history yet
    env.clock.advance(60)
    await env.q.heartbeat(a)
    r = await env.q.claim(a, "first")
    assert r.waited_s == 60
    await env.q.enqueue("h2", "general", "low")
    env.clock.advance(120)
    await env.q.heartbeat(a)
    assert (await env.q.claim(a, "h2")).waited_s == 120
    for cid in ("w1", "w2", "w3", "w4"):
        await env.q.enqueue(cid, "general", "low")
    # mean recent wait 90 s; position p of 4 waits ~ 90 * p / 4.
    assert await env.q.estimated_wait_s("w1") == pytest.approx(22.5)
    assert await env.q.estimated_wait_s("w4") == pytest.approx(90)
    assert await env.q.estimated_wait_s("first") is None  # not waiting
