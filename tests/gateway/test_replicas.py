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

from bot.channels.widget_client import WidgetClient, wait_for
from bot.store.db import Database
from nlu.process import free_port
from tests.support import PG_URL, REDIS_URL, pg_schema

CARELINE = str(Path(sys.executable).parent / "careline")


def customer_texts(msgs: list) -> list[str]:  # type: ignore[type-arg]
    return [m.text for m in msgs if m.sender == "customer"]


@asynccontextmanager
async def replica(env: dict[str, str], log: Path) -> AsyncIterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [CARELINE, "run", "--host", "127.0.0.1", "--port", str(port)],
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


async def test_kill_9_a_replica_and_continue_on_the_other(nlu_url: str, tmp_path: Path) -> None:
    async with pg_schema() as schema:
        env = {
            **os.environ,
            "NLU_URL": nlu_url,
            "REDIS_URL": REDIS_URL,
            "DATABASE_URL": PG_URL,
            "CARELINE__DATABASE__PG_SCHEMA": schema,
            "CARELINE_REDIS_PREFIX": f"t{uuid.uuid4().hex[:10]}",
            "CARELINE_SECRET_KEY": secrets.token_urlsafe(40),  # shared: tokens work on both
            "CARELINE__ENGINE__CLAIM_IDLE_S": "2",
            "CARELINE__ENGINE__SWEEP_EVERY_S": "2",
        }
        db = Database(PG_URL, schema=schema)
        async with (
            replica(env, tmp_path / "a.log") as (url_a, proc_a),
            replica(env, tmp_path / "b.log") as (url_b, _proc_b),
        ):
            c = WidgetClient(url_a + "/ws/widget")
            try:
                await c.connect()
                await c.say("xin chào shop")
                await c.bot_reply()

                # A burst of messages; SIGKILL replica A the moment the last one is acked,
                # before it can have answered them all.
                sent = []
                for text in ("giờ mở cửa mấy giờ", "bảo hành bao lâu", "có trả góp không"):
                    sent.append(await c.say(text))
                await c.expect(lambda f: f["type"] == "ack" and f["client_msg_id"] == sent[-1])
                os.kill(proc_a.pid, signal.SIGKILL)
                proc_a.wait(timeout=10)

                # The widget reconnects — to replica B — and resumes from its last event.
                c.ws_url = url_b + "/ws/widget"
                await c.connect()
                conv_id = c.conversation_id
                assert conv_id

                async def all_answered() -> bool:
                    msgs = await db.transcript(conv_id)
                    return all(m.processed_at for m in msgs if m.sender == "customer") and sum(
                        m.sender == "bot" for m in msgs
                    ) >= len(customer_texts(msgs))

                await wait_for(all_answered, timeout=40, every=0.25)
                last = await c.say("cảm ơn nhé")  # and the conversation simply goes on, on B
                await c.expect(lambda f: f["type"] == "ack" and f["client_msg_id"] == last)
                await wait_for(all_answered, timeout=20, every=0.25)

                transcript = await db.transcript(conv_id)
                customer = [m for m in transcript if m.sender == "customer"]
                stored_ids = {m.client_msg_id for m in customer}
                assert set(sent) <= stored_ids  # every acknowledged message is durable
                answered_to = [m.client_msg_id for m in transcript if m.sender == "bot"]
                # one answer per customer message, none twice (ids re-<msg>-answer)
                assert len(answered_to) == len(set(answered_to)) == len(customer)
                await asyncio.sleep(0.5)
                while True:  # drain what B is still streaming, then compare with the DB
                    try:
                        await c.recv(timeout=1)
                    except (TimeoutError, asyncio.TimeoutError):
                        break
                seen = [m["id"] for m in c.messages()]
                final = [m.id for m in await db.transcript(conv_id)]
                assert seen == final  # nothing lost, nothing twice
            finally:
                await c.close()
                await db.close()
