"""Two gateway replicas (separate processes) share Redis and PostgreSQL. One is killed with
SIGKILL mid-conversation; the customer's widget reconnects to the other and carries on, and
every message the dead replica acknowledged is in the transcript and gets its answer."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from bot.channels.widget_client import WidgetClient, wait_for
from bot.core.store.db import Database
from nlu.process import free_port
from tests.support import PG_URL, REDIS_URL, pg_schema, slow_nlu

CARELINE = str(Path(sys.executable).parent / "careline")


def customer_texts(msgs: list) -> list[str]:  # type: ignore[type-arg]
    return [m.text for m in msgs if m.sender == "customer"]


def replica_env(nlu_url: str, schema: str, prefix: str, **settings: str) -> dict[str, str]:
    """The environment of gateway processes that share one Redis prefix and one PostgreSQL
    schema (and a secret, so visitor tokens work on each); `settings`: more variables."""
    return {
        **os.environ,
        "NLU_URL": nlu_url,
        "REDIS_URL": REDIS_URL,
        "DATABASE_URL": PG_URL,
        "CARELINE__DATABASE__PG_SCHEMA": schema,
        "CARELINE_REDIS_PREFIX": prefix,
        "CARELINE_SECRET_KEY": secrets.token_urlsafe(40),
        **settings,
    }


@asynccontextmanager
async def replica(
    env: dict[str, str], log: Path, *args: str
) -> AsyncIterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [CARELINE, "run", "--host", "127.0.0.1", "--port", str(port), *args],
            env=env, stdout=fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"replica exited: {log.read_text()[-2000:]}")
                try:
                    async with http.get(url + "/readyz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(ready, timeout=60, every=0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@asynccontextmanager
async def two_replicas_apart(
    nlu_url: str, nlu_delay_s: float, *, claim_idle_s: float
) -> AsyncIterator[tuple[str, dict[str, str], str, Database, aioredis.Redis]]:
    """What a kill test's replicas share: a Redis prefix, a PostgreSQL schema, their
    environment (claims and sweeps every `claim_idle_s`), an NLU service behind a proxy
    slowing each parse by `nlu_delay_s` (for the replica to be killed), and the test's own
    view of the database and Redis."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    async with pg_schema() as schema, slow_nlu(nlu_url, nlu_delay_s) as slow_url:
        env = replica_env(
            nlu_url, schema, prefix,
            CARELINE__CONVERSATION__CLAIM_IDLE_S=str(claim_idle_s),
            CARELINE__CONVERSATION__SWEEP_EVERY_S=str(claim_idle_s),
        )  # fmt: skip
        db = Database(PG_URL, schema=schema)
        redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            yield prefix, env, slow_url, db, redis
        finally:
            await redis.aclose()
            await db.close()


async def test_kill_9_mid_turn_where_it_arrived_and_another_replica_answers(
    nlu_url: str, tmp_path: Path
) -> None:
    """A message is answered on the replica that accepted it, with no inbox hop. That replica
    is killed mid-turn (holding the conversation, waiting on the NLU call): the message is
    in SQL, unanswered and in no queue, and another replica's sweep finds it and answers it
    once."""
    from bot.core.live.keys import Keys

    apart = two_replicas_apart(nlu_url, 5.0, claim_idle_s=1)
    async with apart as (prefix, env, slow_url, db, redis):
        keys = Keys(prefix)
        c = WidgetClient("")
        try:
            async with replica({**env, "NLU_URL": slow_url}, tmp_path / "a.log") as (url_a, proc_a):
                c.ws_url = url_a + "/ws/widget"
                await c.connect()
                sent = await c.say("bảo hành bao lâu vậy shop")
                ack = await c.expect(lambda f: f["type"] == "ack" and f["client_msg_id"] == sent)
                conv_id = ack["conversation_id"]

                async def a_is_mid_turn() -> bool:
                    return bool(await redis.exists(keys.conversation_lock(conv_id)))

                await wait_for(a_is_mid_turn, timeout=10, every=0.02)
                os.kill(proc_a.pid, signal.SIGKILL)
                proc_a.wait(timeout=10)
            # The turn ran where the message arrived: it never went through the inbox.
            assert await redis.xlen(keys.inbox) == 0
            assert [m.processed_at for m in await db.transcript(conv_id)] == [None]

            async with replica(env, tmp_path / "b.log") as (url_b, _proc_b):
                c.ws_url = url_b + "/ws/widget"
                await c.connect()

                async def answered() -> bool:
                    msgs = await db.transcript(conv_id)
                    return msgs[0].processed_at is not None and any(m.sender == "bot" for m in msgs)

                await wait_for(answered, timeout=30, every=0.25)
                reply = await c.bot_reply(timeout=15)
                assert reply["text"]
                transcript = await db.transcript(conv_id, include_notes=False)
                assert [m.sender for m in transcript][:1] == ["customer"]
                answered_to = [m.client_msg_id for m in transcript if m.sender == "bot"]
                assert len(answered_to) == len(set(answered_to)) >= 1  # answered once
        finally:
            await c.close()


async def test_kill_9_a_replica_and_continue_on_the_other(nlu_url: str, tmp_path: Path) -> None:
    """Replica A takes the burst from the inbox and is killed while those entries are still
    pending on it; replica B claims them and answers each once, and the widget, reconnected
    to B, received every message exactly once and in order, frame by frame."""
    from bot.core.live.streams import GROUP

    apart = two_replicas_apart(nlu_url, 1.5, claim_idle_s=2)
    async with apart as (prefix, env, slow_url, db, redis):
        inbox = f"{prefix}:inbox"
        c = WidgetClient("")
        try:
            async with replica({**env, "NLU_URL": slow_url}, tmp_path / "a.log") as (url_a, proc_a):
                c.ws_url = url_a + "/ws/widget"
                await c.connect()
                await c.say("xin chào shop")
                await c.bot_reply()
                sent = []
                for text in ("giờ mở cửa mấy giờ", "bảo hành bao lâu", "có trả góp không"):
                    sent.append(await c.say(text))
                await c.expect(lambda f: f["type"] == "ack" and f["client_msg_id"] == sent[-1])

                async def held_by_a() -> list[str]:
                    rows = await redis.xpending_range(inbox, GROUP, min="-", max="+", count=50)
                    return [r["message_id"] for r in rows
                            if str(r["consumer"]).endswith(f":{proc_a.pid}")]  # fmt: skip

                held = await wait_for(held_by_a, timeout=10, every=0.02)
                os.kill(proc_a.pid, signal.SIGKILL)  # mid-turn: A's entries are pending
                proc_a.wait(timeout=10)
            assert held, "replica A held no inbox entry when it was killed"

            async with replica(env, tmp_path / "b.log") as (url_b, _proc_b):
                c.ws_url = url_b + "/ws/widget"  # the widget reconnects, to B, and resumes
                await c.connect()
                conv_id = c.conversation_id
                assert conv_id

                async def all_answered() -> bool:
                    msgs = await db.transcript(conv_id)
                    return all(m.processed_at for m in msgs if m.sender == "customer") and sum(
                        m.sender == "bot" for m in msgs
                    ) >= len(customer_texts(msgs))

                await wait_for(all_answered, timeout=40, every=0.25)

                async def a_entries_finished() -> bool:  # claimed by B and acknowledged
                    rows = await redis.xpending_range(inbox, GROUP, min="-", max="+", count=50)
                    return not {r["message_id"] for r in rows} & set(held)

                await wait_for(a_entries_finished, timeout=20, every=0.25)
                last = await c.say("cảm ơn nhé")  # and the conversation simply goes on, on B
                await c.expect(lambda f: f["type"] == "ack" and f["client_msg_id"] == last)
                await wait_for(all_answered, timeout=20, every=0.25)

                transcript = await db.transcript(conv_id, include_notes=False)
                customer = [m for m in transcript if m.sender == "customer"]
                assert set(sent) <= {m.client_msg_id for m in customer}  # acknowledged = durable
                answered_to = [m.client_msg_id for m in transcript if m.sender == "bot"]
                # one answer per customer message, none twice (ids re-<msg>-answer)
                assert len(answered_to) == len(set(answered_to)) == len(customer)
                await asyncio.sleep(0.5)
                while True:  # drain what B is still streaming
                    try:
                        await c.recv(timeout=1)
                    except (TimeoutError, asyncio.TimeoutError):
                        break
                # The raw frames, as the customer's widget got them: every message once, in
                # order, across the kill and the reconnect (no second history to paper over).
                assert [f["type"] for f in c.frames].count("history") == 0
                on_the_wire = [
                    f["event"]["message"]["id"]
                    for f in c.frames
                    if f["type"] == "event" and f["event"]["kind"] == "message"
                ]
                assert on_the_wire == [m.id for m in transcript]
        finally:
            await c.close()
