"""`careline run --workers N`: N gateway processes share one port, each a whole replica on
the shared Redis and SQL; the supervisor restarts a worker that dies and stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

import aiohttp

from bot.channels.widget_client import WidgetClient, wait_for
from tests.gateway.test_replicas import CARELINE, replica, replica_env
from tests.support import pg_schema


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.add(int(entry.name))
    return found


async def _replicas_answering(url: str, tries: int = 30) -> set[str]:
    """Which replicas answer /healthz, each request on a new connection."""
    seen = set()
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        for _ in range(tries):
            async with http.get(url + "/healthz") as r:
                seen.add((await r.json())["replica"])
    return seen


async def test_workers_share_the_port_restart_and_stop_together(
    nlu_url: str, tmp_path: Path
) -> None:
    async with pg_schema() as schema:
        env = replica_env(nlu_url, schema, f"t{uuid.uuid4().hex[:10]}")
        async with replica(env, tmp_path / "workers.log", "--workers", "2") as (url, proc):
            workers = await wait_for(lambda: len(_children(proc.pid)) == 2 or None, timeout=10)
            assert workers
            await wait_for(lambda: _two(url), timeout=60, every=0.5)
            customer = WidgetClient(url + "/ws/widget")
            await customer.connect()
            await customer.say("bảo hành bao lâu vậy shop")
            assert "bảo hành" in (await customer.bot_reply(timeout=30))["text"].lower()
            await customer.close()

            first = _children(proc.pid)
            victim = min(first)
            os.kill(victim, signal.SIGKILL)
            await wait_for(
                lambda: (len(now := _children(proc.pid)) == 2 and victim not in now) or None,
                timeout=20,
            )
            await wait_for(lambda: _two(url), timeout=60, every=0.5)  # the new one serves

            workers_now = _children(proc.pid)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
            assert not any(Path(f"/proc/{pid}").exists() for pid in workers_now)


async def test_workers_stop_when_their_supervisor_is_killed(nlu_url: str, tmp_path: Path) -> None:
    async with pg_schema() as schema:
        env = replica_env(nlu_url, schema, f"t{uuid.uuid4().hex[:10]}")
        async with replica(env, tmp_path / "workers.log", "--workers", "2") as (url, proc):
            await wait_for(lambda: _two(url), timeout=60, every=0.5)
            workers = _children(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            gone = lambda: not any(Path(f"/proc/{p}").exists() for p in workers)  # noqa: E731
            await wait_for(gone, timeout=30, every=0.2)


async def _two(url: str) -> bool:
    try:
        return len(await _replicas_answering(url)) == 2
    except aiohttp.ClientError:
        return False


def test_workers_without_a_shared_redis_are_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    done = subprocess.run(
        [CARELINE, "run", "--workers", "2", "--port", "0"],
        env={**env, "NLU_URL": "http://127.0.0.1:9"}, capture_output=True, text=True,
        timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "REDIS_URL" in done.stderr and "--workers" in done.stderr
