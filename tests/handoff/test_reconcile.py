"""Redis loses its state; SQL does not. Waiting chats of every severity, a chat held by an
agent, and their first-response deadlines come back from SQL, in the right order, with two
replicas reconciling at once; and the inbox's consumer group is made again, so the bot goes
on answering. Once with the test prefix's keys wiped, once with a real redis-server of the
test's own restarted without persistence."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from bot.channels.widget_client import WidgetClient, wait_for
from nlu.triage.triage import TriageResult
from tests.handoff.conftest import add_account, desk_settings
from tests.support import BACKENDS, backend_settings, own_redis, running_gateway, with_section

SEVERITIES = ("low", "normal", "high", "critical")


async def _escalated_chats(g: Any) -> list[str]:
    """One waiting chat per severity (oldest first) plus one held by agent 'held'."""
    engine, db = g.gw.engine, g.gw.db
    ids = []
    for severity in (*SEVERITIES, "normal"):
        c = WidgetClient(g.ws_url)
        await c.connect()
        await c.say("xin chào shop")
        await c.bot_reply()
        conv = await db.get_conversation(c.conversation_id)
        (msg,) = [m for m in await db.transcript(conv.id) if m.sender == "customer"]
        queue = "safety" if severity == "critical" else "general"
        t = TriageResult(severity, queue, (f"test: {severity}",), None, 0.0)
        await engine.escalate(conv, msg, f"escalated as {severity}", conv.language, t)
        await c.close()
        ids.append(conv.id)
    return ids


async def _snapshot(g: Any, ids: list[str]) -> tuple[dict, dict, set]:
    queues, sla = g.gw.desk.queues, g.gw.desk.sla
    lines = {q: [w.conversation_id for w in await queues.waiting(q)] for q in ("safety", "general")}
    deadlines = await sla.deadlines(ids)
    held = {c for c in ids if c not in {x for line in lines.values() for x in line}}
    return lines, deadlines, held


async def _wipe(client: aioredis.Redis, prefix: str) -> None:
    keys = [k async for k in client.scan_iter(f"{prefix}:*")]
    if keys:
        await client.delete(*keys)


async def _check_restored(g: Any, ids: list[str], before: tuple[dict, dict, set]) -> None:
    lines, deadlines, held = before
    queues = g.gw.desk.queues
    # A pass restores chat by chat, each line then its clock: wait for the pass to end.
    await wait_for(lambda: _all_known(queues, ids, g.gw.desk.sla, len(deadlines)), timeout=15)
    after_lines, after_deadlines, after_held = await _snapshot(g, ids)
    assert after_lines == lines  # same chats, same order (critical first, then by age)
    assert after_held == held
    assert set(after_deadlines) == set(deadlines)
    for c, d in deadlines.items():
        assert after_deadlines[c] == pytest.approx(d, abs=1.0)  # from SQL's escalated_at
    # every waiting chat can be claimed again, the most severe first
    agent = await add_account(g, "after", queues=["safety", "general"])
    await queues.set_presence(agent, "online", skills=["safety", "general"], max_chats=10)
    first = await queues.claim_next(agent)
    assert first.ok and first.conversation_id == lines["safety"][0]


async def _all_known(queues: Any, ids: list[str], sla: Any, clocks: int) -> bool:
    try:
        known = len(await queues.known(ids)) == len(ids)
        return known and len(await sla.deadlines(ids)) >= clocks
    except aioredis.ConnectionError:  # a pooled connection from before the restart
        return False


async def _bot_still_answers(g: Any) -> None:
    c = WidgetClient(g.ws_url)
    try:
        await c.connect()
        await c.say("bảo hành bao lâu vậy shop")
        reply = await c.bot_reply(timeout=20)
        assert "bảo hành" in reply["text"].lower()
    finally:
        await c.close()


async def _hold_one(g: Any, conversation_id: str) -> None:
    queues = g.gw.desk.queues
    agent = await add_account(g, "held", queues=["general", "safety"])
    await queues.set_presence(agent, "online", skills=["general", "safety"], max_chats=5)
    assert (await queues.claim(agent, conversation_id)).ok
    await g.gw.engine.agent_joined(conversation_id, agent, "Held")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_wiped_redis_is_rebuilt_from_sql_by_two_replicas(backend, tmp_path, nlu_url) -> None:  # type: ignore[no-untyped-def]
    # a short claim period: the stale-entry claim runs right away and must survive NOGROUP
    async with backend_settings(backend, tmp_path, claim_idle_s=1.0) as s:
        s = desk_settings(s, reconcile_every_s=0.5)
        async with (
            running_gateway(s, nlu_url, replica="A") as a,
            running_gateway(s, nlu_url, replica="B") as b,
        ):
            ids = await _escalated_chats(a)
            await _hold_one(a, ids[-1])
            before = await _snapshot(a, ids)
            await _wipe(a.gw.redis.client, s.redis.prefix)
            await _check_restored(b, ids, before)
            await _bot_still_answers(a)  # the inbox group is made again
            await _bot_still_answers(b)


async def test_a_restarted_redis_without_persistence_is_rebuilt(tmp_path, nlu_url) -> None:  # type: ignore[no-untyped-def]
    async with (
        own_redis() as server,
        backend_settings("postgresql", tmp_path, claim_idle_s=1.0) as s,
    ):
        s = with_section(desk_settings(s, reconcile_every_s=0.5), "redis", url=server.url)
        async with running_gateway(s, nlu_url, replica="A") as a:
            ids = await _escalated_chats(a)
            await _hold_one(a, ids[-1])
            before = await _snapshot(a, ids)
            await server.restart()  # everything in Redis is gone
            await _check_restored(a, ids, before)
            await _bot_still_answers(a)


class _ListedEarlier:
    """The database as a reconcile pass sees it part-way through: its listing of open chats
    was read before the latest changes; every other read is current."""

    def __init__(self, db: Any, listed: list[Any]) -> None:
        self._db, self._listed = db, listed

    async def list_conversations(self, **_: Any) -> list[Any]:
        return self._listed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


async def test_a_chat_resolved_during_a_pass_does_not_come_back_as_held(gateway) -> None:  # type: ignore[no-untyped-def]
    from handoff.reconcile import Reconciler

    g = gateway
    (cid,) = (await _escalated_chats(g))[-1:]
    await _hold_one(g, cid)
    listed = await g.gw.db.list_conversations(states=["WAITING_AGENT", "WITH_AGENT"])
    assert cid in {c.id for c in listed}
    await g.gw.engine.end(cid)  # the agent resolves it: Redis lets go, then SQL moves on
    assert not await g.gw.desk.queues.known([cid])
    stale = Reconciler(_ListedEarlier(g.gw.db, listed), g.gw.desk.queues, g.gw.desk.sla)
    done = await stale.run_once()
    assert done.held == 0 and not await g.gw.desk.queues.known([cid])  # the agent's room stays free
