"""A first-response deadline outlives the gateway process that started it: the replica is
killed (SIGKILL), the deadline is made to pass while no gateway runs (the test moves the
clock by moving the deadline in Redis, so nothing races a real timer), and a new process
records the breach exactly once, also across one more kill and restart."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from bot.channels.widget_client import WidgetClient, wait_for
from bot.core.store.db import Database
from tests.gateway.test_replicas import replica, replica_env
from tests.support import PG_URL, REDIS_URL, pg_schema


async def test_a_breach_fires_once_across_killed_gateway_processes(
    nlu_url: str, tmp_path: Path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    async with pg_schema() as schema:
        env = replica_env(nlu_url, schema, prefix, CARELINE__HANDOFF__SLA_CHECK_EVERY_S="0.2")
        db = Database(PG_URL, schema=schema)
        redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        timers = f"{prefix}:sla"

        async def breaches(cid: str) -> list:  # type: ignore[type-arg]
            return [e for e in await db.escalations(cid) if e.kind == "sla_breach"]

        try:
            async with replica(env, tmp_path / "a.log") as (url_a, proc_a):
                c = WidgetClient(url_a + "/ws/widget")
                await c.connect()
                await c.say("cho mình gặp nhân viên")
                await c.expect(
                    lambda f: f["type"] == "event" and f["event"].get("state") == "WAITING_AGENT"
                )
                cid = c.conversation_id
                await c.close()
                deadline = await wait_for(lambda: redis.zscore(timers, cid), timeout=10)
                assert deadline > time.time() + 60  # far off: nothing fires on its own
                os.kill(proc_a.pid, signal.SIGKILL)
                proc_a.wait(timeout=10)
            # the clock moves on while no gateway runs: the deadline is now in the past
            assert await redis.zadd(timers, {cid: time.time() - 1}, xx=True) == 0
            assert not await breaches(cid)
            async with replica(env, tmp_path / "b.log") as (_url_b, proc_b):
                found = await wait_for(lambda: breaches(cid), timeout=20, every=0.2)
                assert len(found) == 1
                await asyncio.sleep(1.5)  # several more watcher rounds
                os.kill(proc_b.pid, signal.SIGKILL)
                proc_b.wait(timeout=10)
            async with replica(env, tmp_path / "c.log"):
                await asyncio.sleep(2.0)  # a third process, same Redis, same SQL
            assert len(await breaches(cid)) == 1
        finally:
            await redis.aclose()
            await db.close()
