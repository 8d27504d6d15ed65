"""First-response SLA timers: on real Redis with a controlled clock, and across a gateway
restart (the timer outlives the replica that started it; the breach is recorded once)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from bot.channels.widget_client import WidgetClient, wait_for
from bot.core.live.keys import Keys
from handoff.sla import SlaTimers
from handoff.web.agent_client import AgentClient
from tests.handoff.conftest import PASSWORD, desk_settings
from tests.support import backend_settings, running_gateway

DEADLINES = {"critical": 60.0, "high": 300.0, "normal": 900.0, "low": 3600.0}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def timers(redis_client: aioredis.Redis) -> AsyncIterator[tuple[SlaTimers, Clock]]:
    clock = Clock()
    yield SlaTimers(redis_client, Keys(f"t{uuid.uuid4().hex[:10]}"), DEADLINES, clock=clock), clock


async def test_deadline_per_severity_and_fires_once(timers) -> None:  # type: ignore[no-untyped-def]
    sla, clock = timers
    assert await sla.start("c1", "critical", "safety") == clock.now + 60
    assert await sla.start("c2", "normal", "general") == clock.now + 900
    # Starting again (a re-escalation) keeps the original deadline.
    clock.now += 30
    assert await sla.start("c1", "critical", "safety") == clock.now - 30 + 60
    assert await sla.take_due() == []
    clock.now += 31
    # Two watchers asking at the same moment: each due timer goes to exactly one.
    a, b = await asyncio.gather(sla.take_due(), sla.take_due())
    assert sorted(t.conversation_id for t in a + b) == ["c1"]
    (due,) = a + b
    assert (due.severity, due.queue) == ("critical", "safety")
    await sla.done("c1")
    clock.now += 3600
    assert [t.conversation_id for t in await sla.take_due()] == ["c2"]


async def test_stopped_timer_never_fires(timers) -> None:  # type: ignore[no-untyped-def]
    sla, clock = timers
    await sla.start("c1", "high", "technical")
    await sla.stop("c1")  # a person answered in time
    clock.now += 10_000
    assert await sla.take_due() == []


async def test_a_watcher_dying_mid_breach_is_retried(timers) -> None:  # type: ignore[no-untyped-def]
    sla, clock = timers
    await sla.start("c1", "critical", "safety")
    clock.now += 61
    assert [t.conversation_id for t in await sla.take_due()] == ["c1"]
    # ... the watcher died before done(): nobody else takes it at once ...
    assert await sla.take_due() == []
    # ... but after retake_after_s another watcher does.
    clock.now += sla.retake_after_s + 1
    assert [t.conversation_id for t in await sla.take_due()] == ["c1"]


async def test_rising_severity_tightens_the_deadline(timers) -> None:  # type: ignore[no-untyped-def]
    sla, clock = timers
    start = clock.now
    await sla.start("c1", "normal", "technical")
    await sla.tighten("c1", "critical")
    assert await sla.deadline("c1") == start + 60
    await sla.tighten("c1", "low")  # never loosens
    assert await sla.deadline("c1") == start + 60


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_breach_survives_gateway_restart_and_fires_once(backend, tmp_path, nlu_url) -> None:  # type: ignore[no-untyped-def]
    async with backend_settings(backend, tmp_path) as s:
        short = dict(DEADLINES, normal=2.0)
        s = desk_settings(s, sla_first_response_s=short, sla_check_every_s=0.2)
        # Replica A: the customer escalates; A stops before the deadline passes.
        async with running_gateway(s, nlu_url, replica="A") as a:
            customer = WidgetClient(a.ws_url)
            await customer.connect()
            await customer.say("cho mình gặp nhân viên")
            await customer.expect(
                lambda f: f["type"] == "event" and f["event"].get("state") == "WAITING_AGENT"
            )
            cid = customer.conversation_id
            await customer.close()
            sup_id = (await a.gw.desk.accounts.add("sup", PASSWORD, role="supervisor")).id
            assert not [e for e in await a.gw.db.escalations(cid) if e.kind == "sla_breach"]
        await asyncio.sleep(2.5)  # the deadline passes while no gateway runs
        # Replica B (a fresh process would do the same: the timer lives in Redis).
        async with running_gateway(s, nlu_url, replica="B") as b:
            async with AgentClient(b.url) as sup:
                await sup.login("sup", PASSWORD)
                await sup.connect()
                breaches = await wait_for(lambda: _breaches(b, cid), timeout=15)
                assert breaches[0].severity == "normal" and "2 s" in breaches[0].reason
                listed = await sup.get("/api/supervisor/breaches")
                assert [x["conversation_id"] for x in listed["breaches"]] == [cid]
                # The chat moved up a level in its queue, its own severity unchanged.
                waiting = await b.gw.desk.queues.waiting("general")
                assert [(w.conversation_id, w.severity) for w in waiting] == [(cid, "high")]

                # A breach while supervisors watch reaches their console live.
                other = WidgetClient(b.ws_url)
                await other.connect()
                await other.say("cho mình gặp nhân viên")
                await other.expect(
                    lambda f: f["type"] == "event" and f["event"].get("state") == "WAITING_AGENT"
                )
                alert = await sup.console_event("sla_breach", conversation_id=other.conversation_id)
                assert alert["severity"] == "normal" and alert["queue"] == "general"
                await other.close()
            await asyncio.sleep(1.0)  # several more watcher rounds
            assert len(await _breaches(b, cid)) == 1
            assert len(await _breaches(b, other.conversation_id)) == 1
            assert sup_id


async def _breaches(g, cid: str) -> list:  # type: ignore[no-untyped-def, type-arg]
    return [e for e in await g.gw.db.escalations(cid) if e.kind == "sla_breach"]
