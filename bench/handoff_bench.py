"""Escalation → agent notification latency, with 200 agents online and 1,000 chats waiting.

Why: a hazard is only as fast as the moment a person hears of it. This starts the real
system (NLU service + gateway as separate processes, PostgreSQL + Redis), then:

1. load: A agents (default 200) sign in, open the console WebSocket, go online (one chat
   each, heartbeats every 20 s); W + A customers (default 1,000 + 200) ask for a person in
   the widget, so every agent holds one chat and W chats wait in line;
2. notify: E customers (default 100) report a hazard, one every 0.25 s. Measured: from the
   customer's send to each agent console receiving the `escalated` event (every agent sees
   every escalation: A deliveries each), and to the first agent receiving it;
3. assign: R agents (default 100) each resolve their chat; the freed agent is handed the most
   urgent waiting chat (the critical ones first). Measured: from the resolve request to that
   agent receiving `assigned`.

    .venv/bin/python bench/handoff_bench.py                 # 200 agents, 1,000 waiting
    .venv/bin/python bench/handoff_bench.py --quick         # 20 agents, 50 waiting

Progress to stderr, the Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from common import (  # bench/ is on sys.path when run as a script
    percentile,
    spawn,
    stop_process,
    wait_http,
)
from gateway_stacks import drop_redis_prefix
from gateway_workload import PG_URL, REDIS_URL

from bot.auth.accounts import Accounts
from bot.channels.widget_client import WidgetClient
from bot.core.settings import load_settings
from bot.core.store.db import Database
from bot.core.store.scratch import temporary_schema
from handoff.web.agent_client import AgentClient
from nlu.process import NLUServiceProcess, free_port
from nlu.training import ensure_project_model

PASSWORD = "bench-password-123"
QUEUES = ("safety", "technical", "billing", "orders", "general")
ASK = "cho mình gặp nhân viên tư vấn"
HAZARD = "điện thoại nhà mình đang bốc khói và có mùi khét"


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def stack(run_dir: Path) -> AsyncIterator[tuple[str, str, str]]:
    """(gateway URL, PostgreSQL schema, Redis prefix) of a freshly started system."""
    settings = load_settings()
    model = await asyncio.to_thread(ensure_project_model, settings)
    nlu = NLUServiceProcess(settings, model, port=0, log_path=run_dir / "nlu.log")
    prefix = f"bench{uuid.uuid4().hex[:10]}"
    gateway = None
    async with temporary_schema(PG_URL, "bench") as schema:
        try:
            nlu_url = await nlu.start()
            port = free_port()
            env = {
                k: v for k, v in __import__("os").environ.items() if not k.startswith("CARELINE__")
            }
            env.update(
                NLU_URL=nlu_url, REDIS_URL=REDIS_URL, CARELINE_REDIS_PREFIX=prefix,
                DATABASE_URL=PG_URL, CARELINE__DATABASE__PG_SCHEMA=schema,
                CARELINE__WIDGET__RATE_PER_IP_PER_MINUTE="100000000",
                CARELINE__WIDGET__MAX_CONNECTIONS_PER_IP="1000000",
                CARELINE__AUTH__LOGIN_MAX_FAILURES_PER_IP="1000000",
                CARELINE__AUTH__DEMO_ADMIN="false",
                # People are "in" all day for the bench: no callback offers.
                CARELINE__HANDOFF__OPENING_HOURS='{"start": "00:00", "end": "24:00"}',
                PYTHONUNBUFFERED="1",
            )  # fmt: skip
            log = run_dir / "gateway.log"
            gateway = await spawn(
                [str(Path(sys.executable).with_name("careline")), "run", "--port", str(port)],
                log, cwd=settings.root, env=env,
            )  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            await wait_http(url + "/readyz", gateway, log, 120, "careline gateway")
            say(f"gateway {url} (pid {gateway.pid}), NLU {nlu_url}, schema {schema}")
            yield url, schema, prefix
        finally:
            await stop_process(gateway)
            await nlu.stop()
            await drop_redis_prefix(prefix)


async def make_accounts(schema: str, n: int) -> list[str]:
    db = Database(PG_URL, schema=schema)
    try:
        accounts = Accounts(db)
        names = [f"agent{i:03d}" for i in range(n)]
        for name in names:  # argon2 by design takes a while; sequential is fine for 200
            await accounts.add(name, PASSWORD, queues=list(QUEUES), max_chats=1)
        return names
    finally:
        await db.close()


async def heartbeats(agents: list[AgentClient]) -> None:
    while True:
        await asyncio.sleep(20)
        for a in agents:
            with contextlib.suppress(Exception):
                await a.send({"type": "heartbeat"})


async def escalate(url: str, text: str, n: int, concurrency: int) -> list[WidgetClient]:
    """n customers send `text` and wait until their chat is waiting or with an agent."""
    sem = asyncio.Semaphore(concurrency)
    clients: list[WidgetClient] = []

    async def one() -> None:
        async with sem:
            c = WidgetClient(url.replace("http", "ws", 1) + "/ws/widget", origin=url)
            await c.connect()
            await c.say(text)
            await c.expect(
                lambda f: (
                    f["type"] == "event"
                    and f["event"].get("state") in ("WAITING_AGENT", "WITH_AGENT")
                ),
                timeout=120,
            )
            clients.append(c)

    await asyncio.gather(*(one() for _ in range(n)))
    return clients


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f} ms"


async def notify_phase(
    url: str, agents: list[AgentClient], n: int, gap_s: float
) -> tuple[list[float], list[float], int, list[WidgetClient]]:
    """Hazard reports; returns (every delivery's latency, first delivery's, missing, clients)."""
    reporters: list[WidgetClient] = []
    sent: dict[str, float] = {}
    got: dict[str, list[float]] = {}
    expected = n * len(agents)
    all_in = asyncio.Event()

    async def collect(a: AgentClient) -> None:
        while True:
            f = await a.frames.get()
            e = f.get("event") or {}
            if f.get("type") == "console" and e.get("kind") == "escalated":
                # The ack (with the id) may arrive after the console event: match later.
                got.setdefault(e["conversation_id"], []).append(f["_received"])
                if sum(len(v) for v in got.values()) >= expected:
                    all_in.set()

    collectors = [asyncio.create_task(collect(a)) for a in agents]
    try:
        for _ in range(n):
            # Connected just before speaking: an idle test client reads nothing, so it would
            # miss the server's WebSocket pings and be dropped.
            r = WidgetClient(url.replace("http", "ws", 1) + "/ws/widget", origin=url)
            reporters.append(r)
            await r.connect()
            t0 = time.time()
            await r.say(HAZARD)
            ack = await r.expect(lambda f: f["type"] == "ack", timeout=30)
            sent[ack["conversation_id"]] = t0
            await asyncio.sleep(gap_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), 60)
    finally:
        for t in collectors:
            t.cancel()
    deliveries = [t - sent[c] for c, times in got.items() if c in sent for t in times]
    firsts = [min(times) - sent[c] for c, times in got.items() if c in sent]
    for cid in sorted(set(sent) - set(got)):  # say what happened to an unannounced chat
        try:
            card = await agents[0].get(f"/api/agent/conversations/{cid}")
            seen = (card["conversation"]["state"], [h["kind"] for h in card["history"]])
        except Exception as e:
            seen = ("?", [repr(e)])
        say(f"no `escalated` event for {cid}: state {seen[0]}, history {seen[1]}")
    return deliveries, firsts, expected - len(deliveries), reporters


async def assign_phase(agents: list[AgentClient]) -> list[float]:
    """Each agent resolves its chat; latency until it is handed the next one."""
    latencies: list[float] = []
    for a in agents:
        chats = (await a.get("/api/agent/me"))["chats"]
        if not chats:
            continue
        while not a.frames.empty():
            a.frames.get_nowait()
        t0 = time.time()
        await a.post(f"/api/agent/conversations/{chats[0]['conversation_id']}/resolve")
        await a.console_event("assigned", agent_id=a.principal["id"], timeout=30)
        latencies.append(time.time() - t0)
    return latencies


async def main(args: argparse.Namespace) -> int:
    run_dir = Path(tempfile.mkdtemp(prefix="careline-handoff-bench-"))
    say(f"logs in {run_dir}")
    customers: list[WidgetClient] = []
    async with stack(run_dir) as (url, schema, _prefix):
        say(f"creating {args.agents} agent accounts")
        names = await make_accounts(schema, args.agents)
        agents = [AgentClient(url) for _ in names]
        beat = asyncio.create_task(heartbeats(agents))
        try:
            for a, name in zip(agents, names, strict=True):
                await a.login(name, PASSWORD)
                await a.connect()
                await a.online()
            say(f"{args.agents} agents online; {args.waiting + args.agents} customers escalate")
            started = time.monotonic()
            customers += await escalate(url, ASK, args.waiting + args.agents, args.concurrency)
            say(f"load phase done in {time.monotonic() - started:.0f} s")
            waiting = sum(q["count"] for q in (await agents[0].get("/api/agent/queues"))["queues"])
            say(f"chats waiting: {waiting}")
            for a in agents:  # forget the load phase's events
                while not a.frames.empty():
                    a.frames.get_nowait()
            say(f"notify phase: {args.escalations} hazard reports, one every {args.gap_s} s")
            deliveries, firsts, missing, reporters = await notify_phase(
                url, agents, args.escalations, args.gap_s
            )
            customers += reporters
            say(f"assign phase: {args.resolves} agents resolve their chat")
            assigned = await assign_phase(agents[: args.resolves])
        finally:
            beat.cancel()
            for a in agents:
                await a.close()
            for c in customers:
                with contextlib.suppress(Exception):
                    await c.close()

    print(f"\n### Handoff notification latency ({args.agents} agents online, "
          f"{waiting} chats waiting; {args.escalations} hazard escalations)\n")  # fmt: skip
    print("| measure | n | p50 | p99 | max |")
    print("|---|---|---|---|---|")
    for label, vals in (
        ("customer send → `escalated` on every agent console", deliveries),
        ("customer send → first agent console", firsts),
        ("resolve → freed agent gets `assigned` (next urgent chat)", assigned),
    ):
        print(f"| {label} | {len(vals)} | {ms(percentile(vals, 50))} | "
              f"{ms(percentile(vals, 99))} | {ms(max(vals) if vals else None)} |")  # fmt: skip
    print(f"\nconsole events expected but not received: {missing}")
    return 0 if missing == 0 else 1


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--waiting", type=int, default=1000)
    p.add_argument("--escalations", type=int, default=100)
    p.add_argument("--resolves", type=int, default=100)
    p.add_argument("--gap-s", type=float, default=0.25)
    p.add_argument("--concurrency", type=int, default=50, help="customers escalating at once")
    p.add_argument("--quick", action="store_true", help="20 agents, 50 waiting, 10 escalations")
    args = p.parse_args()
    if args.quick:
        args.agents, args.waiting, args.escalations, args.resolves = 20, 50, 10, 10
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
