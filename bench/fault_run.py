"""Fault run: customers and agents on two gateway replicas while the run breaks things.

    .venv/bin/python bench/fault_run.py                 # 200 customers, 20 agents, ~90 s
    .venv/bin/python bench/fault_run.py --customers 20 --agents 4 --seconds 30   # quick

What it does, all on loopback, with servers of its own (the machine's shared Redis and
PostgreSQL are never touched): a redis-server without persistence, a PostgreSQL cluster made
with initdb in a temporary folder, the NLU service, and two `careline run` replicas. Widget
customers chat (FAQs, and some ask for a person) and reconnect to a live replica whenever
their socket drops, re-sending what was not acknowledged (same client_msg_id); agents claim
escalated chats, reply and resolve. Meanwhile the run
  1. kills replica A with SIGKILL (and starts it again 5 s later),
  2. restarts Redis, losing everything in it,
  3. stops PostgreSQL for 10 s.
Afterwards it checks, from SQL and Redis, and prints the counts:
  * every message a customer saw acknowledged is in SQL and was processed,
  * no customer message got two bot answers,
  * every chat SQL says is waiting is in a queue with its first-response deadline (or held
    by an agent, or already answered by one),
  * no customer received the same message twice on the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.core.settings import load_settings  # noqa: E402
from nlu.process import NLUServiceProcess, free_port  # noqa: E402
from nlu.training import ensure_project_model  # noqa: E402

CARELINE = str(Path(sys.executable).parent / "careline")
PG_BIN = Path("/usr/lib/postgresql")
FAQS = ("bao hanh bao lau vay shop", "giờ mở cửa mấy giờ", "có trả góp không shop",
        "phí ship bao nhiêu", "how long is the warranty?")  # fmt: skip
ASK_PERSON = "cho mình gặp nhân viên"
QUEUES = ("safety", "technical", "billing", "orders", "general")
PASSWORD = "fault run agent password"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- servers of our own ---------------------------------------------------------------------


class OwnRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class OwnPostgres:
    """initdb in a temporary folder, run as the postgres user (initdb refuses root)."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.dir = base / "pg"
        versions = sorted(PG_BIN.glob("*/bin/initdb"))
        if not versions:
            raise SystemExit("PostgreSQL server binaries not found under /usr/lib/postgresql")
        self.bin = versions[-1].parent
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *cmd: str) -> None:
        full = [str(self.bin / cmd[0]), *cmd[1:]]
        if self.user:
            full = ["runuser", "-u", self.user, "--", *full]
        subprocess.run(full, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def init(self) -> None:
        self.dir.mkdir(parents=True)
        if self.user:
            shutil.chown(self.dir, self.user, self.user)
            shutil.chown(self.dir.parent, self.user, self.user)
        self._run("initdb", "-D", str(self.dir), "-A", "trust", "-U", "postgres")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "careline")

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir}"
        self._run("pg_ctl", "-D", str(self.dir), "-o", opts, "-l", str(self.dir / "log"),
                  "-w", "start")  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir), "-m", "fast", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/careline"


def _wait_port(port: int, timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class Replica:
    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.name, self.env, self.logs = name, env, logs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{self.name}.log", "ab") as fh:  # the child keeps its own copy
            return subprocess.Popen(
                [CARELINE, "run", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env, stdout=fh, stderr=subprocess.STDOUT,
            )  # fmt: skip

    async def start(self) -> None:
        self.proc = await asyncio.to_thread(self._spawn)
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(self.url + "/readyz") as r:
                        if r.status == 200:
                            return
                if self.proc.poll() is not None:
                    raise RuntimeError(f"replica {self.name} exited; see its log in {self.logs}")
                await asyncio.sleep(0.2)
        raise RuntimeError(f"replica {self.name} did not become ready")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


# -- load --------------------------------------------------------------------------------------


@dataclass
class Customer:
    n: int
    token: str | None = None
    conversation_id: str | None = None
    last_event_id: str | None = None
    unacked: dict[str, str] = field(default_factory=dict)  # client_msg_id -> text
    acked: set[str] = field(default_factory=set)
    wire: list[int] = field(default_factory=list)  # message ids as received, in order
    reconnects: int = 0
    resend_at: dict[str, float] = field(default_factory=dict)  # refused for now: when again
    retries: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)  # error frames, by code
    given_up: int = 0  # refused for good (as the widget shows "not sent")


async def run_customer(c: Customer, replicas: list[Replica], stop: asyncio.Event) -> None:
    rnd = random.Random(c.n)
    sent = 0
    async with aiohttp.ClientSession() as http:
        while not stop.is_set() or c.unacked:
            live = [r for r in replicas if r.alive] or replicas
            target = rnd.choice(live)
            try:
                # as a load balancer in front of the replicas would say who the visitor is
                xff = {"X-Forwarded-For": f"198.51.{c.n // 250}.{c.n % 250 + 1}"}
                async with http.ws_connect(
                    target.url + "/ws/widget", heartbeat=None, headers=xff
                ) as ws:
                    hello: dict[str, Any] = {"type": "hello", "locale": "vi"}
                    if c.token:
                        hello["token"] = c.token
                    if c.last_event_id:
                        hello["last_event_id"] = c.last_event_id
                    await ws.send_json(hello)
                    for cid, text in list(c.unacked.items()):  # same id: stored at most once
                        await ws.send_json({"type": "message", "client_msg_id": cid, "text": text})
                    next_send = time.monotonic() + rnd.uniform(0.5, 2.0)
                    while not (stop.is_set() and not c.unacked):
                        timeout = max(0.05, next_send - time.monotonic())
                        try:
                            msg = await ws.receive(timeout=timeout)
                        except TimeoutError:
                            msg = None
                        if msg is not None:
                            if msg.type != aiohttp.WSMsgType.TEXT:
                                break  # closed: reconnect
                            _on_frame(c, json.loads(msg.data))
                        for cid in [k for k, t in c.resend_at.items() if t <= time.monotonic()]:
                            del c.resend_at[cid]
                            if cid in c.unacked:
                                await ws.send_json(
                                    {
                                        "type": "message",
                                        "client_msg_id": cid,
                                        "text": c.unacked[cid],
                                    }
                                )
                        if not stop.is_set() and time.monotonic() >= next_send:
                            sent += 1
                            text = ASK_PERSON if sent % 4 == 0 else rnd.choice(FAQS)
                            cid = uuid.uuid4().hex[:24]
                            c.unacked[cid] = text
                            await ws.send_json(
                                {"type": "message", "client_msg_id": cid, "text": text}
                            )
                            next_send = time.monotonic() + rnd.uniform(2.0, 5.0)
            except (aiohttp.ClientError, ConnectionError, RuntimeError, TimeoutError):
                pass
            c.reconnects += 1
            c.resend_at.clear()  # a new socket re-sends everything not acknowledged
            await asyncio.sleep(0.3 + rnd.random() * 0.5)


def _on_frame(c: Customer, f: dict[str, Any]) -> None:
    kind = f.get("type")
    if kind == "welcome":
        c.token = f.get("token") or c.token
        c.conversation_id = f.get("conversation_id") or c.conversation_id
    elif kind == "ack":
        cid = f.get("client_msg_id")
        c.unacked.pop(cid, None)
        c.acked.add(cid)
        c.conversation_id = f.get("conversation_id") or c.conversation_id
    elif kind == "history":
        c.conversation_id = f.get("conversation_id") or c.conversation_id
        c.last_event_id = f.get("last_event_id") or c.last_event_id
        c.wire = [m["id"] for m in f.get("messages") or []]  # the page starts over
    elif kind == "error":  # what the widget does with a refusal (bot/static/widget.js)
        code, cid = str(f.get("code")), f.get("client_msg_id")
        c.refused[code] = c.refused.get(code, 0) + 1
        if cid not in c.unacked:
            return
        c.retries[cid] = n = c.retries.get(cid, 0) + 1
        if code in ("rate_limited", "unavailable"):
            c.resend_at[cid] = time.monotonic() + max(1.0, float(f.get("retry_after") or 2))
        elif code == "internal" and n <= 3:
            c.resend_at[cid] = time.monotonic() + 2.0 * n
        else:  # cannot succeed as sent, or refused three times: shown as not sent
            del c.unacked[cid]
            c.given_up += 1
    elif kind == "event":
        c.last_event_id = f.get("eid") or c.last_event_id
        event = f.get("event") or {}
        if event.get("kind") == "message":
            c.wire.append(event["message"]["id"])


async def run_agent(n: int, replicas: list[Replica], stop: asyncio.Event, stats: dict) -> None:
    rnd = random.Random(1000 + n)
    while not stop.is_set():
        live = [r for r in replicas if r.alive] or replicas
        base = rnd.choice(live).url
        try:
            # unsafe: keep the session cookie for an IP-address host (127.0.0.1)
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                login = {"username": f"agent{n}", "password": PASSWORD}
                async with http.post(base + "/api/auth/login", json=login) as r:
                    if r.status != 200:
                        log(f"agent{n}: login answered {r.status}: {(await r.text())[:200]}")
                        await asyncio.sleep(1)
                        continue
                    csrf = (await r.json())["csrf_token"]
                h = {"X-CSRF-Token": csrf}
                await http.post(base + "/api/agent/presence", json={"status": "online"}, headers=h)
                while not stop.is_set():
                    # the desk assigns waiting chats to online agents by itself; an agent
                    # with room also claims the next one
                    async with http.post(base + "/api/agent/claim", json={}, headers=h) as r:
                        stats["claimed"] += r.status == 200
                    async with http.get(base + "/api/agent/me") as r:
                        if r.status == 401:  # the session ended (Redis lost it): sign in again
                            stats["relogins"] += 1
                            break
                        mine = [c["conversation_id"] for c in (await r.json()).get("chats", [])]
                    await http.post(base + "/api/agent/presence", json={"status": "online"},
                                    headers=h)  # fmt: skip
                    if not mine:
                        await asyncio.sleep(1.0)
                        continue
                    for cid in mine:
                        body = {"text": "Chào bạn, mình hỗ trợ ngay ạ.", "client_msg_id": cid}
                        await http.post(f"{base}/api/agent/conversations/{cid}/messages",
                                        json=body, headers=h)  # fmt: skip
                        await asyncio.sleep(rnd.uniform(0.5, 2))
                        async with http.post(f"{base}/api/agent/conversations/{cid}/resolve",
                                             json={}, headers=h) as r:  # fmt: skip
                            stats["resolved"] += r.status == 200
        except (aiohttp.ClientError, ConnectionError, TimeoutError, ValueError, KeyError) as e:
            stats["agent_errors"] = stats.get("agent_errors", 0) + 1
            kind = type(e).__name__
            if kind not in stats["agent_error_kinds"]:  # each kind of failure once, in full
                log(f"agent{n}: {e!r} (reconnecting)")
            stats["agent_error_kinds"][kind] = stats["agent_error_kinds"].get(kind, 0) + 1
            await asyncio.sleep(1.0)


# -- the run -----------------------------------------------------------------------------------


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--customers", type=int, default=200)
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60, help="load time (faults inside it)")
    p.add_argument("--keep", action="store_true", help="keep the run folder (replica logs)")
    args = p.parse_args()

    settings = load_settings()
    base = Path(tempfile.mkdtemp(prefix="careline-fault-"))
    os.chmod(base, 0o755)
    redis, pg = OwnRedis(), OwnPostgres(base)
    replicas: list[Replica] = []
    nlu: NLUServiceProcess | None = None
    try:
        log(f"own redis-server on {redis.port}, own PostgreSQL cluster on {pg.port} in {base}")
        redis.start()
        pg.init()
        model = await asyncio.to_thread(ensure_project_model, settings)
        nlu = NLUServiceProcess(settings, model, port=0)
        nlu_url = await nlu.start(timeout=180)
        prefix = f"fault{uuid.uuid4().hex[:6]}"
        env = {
            **os.environ,
            "NLU_URL": nlu_url, "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
            "DATABASE_URL": pg.url, "CARELINE_REDIS_PREFIX": prefix,
            "CARELINE_SECRET_KEY": secrets.token_urlsafe(40),
            "CARELINE__CONVERSATION__CLAIM_IDLE_S": "2",
            "CARELINE__CONVERSATION__SWEEP_EVERY_S": "2",
            "CARELINE__HANDOFF__RECONCILE_EVERY_S": "1",
            # the run stands in for the load balancer: it names each visitor's address
            "CARELINE__GATEWAY__TRUSTED_PROXIES": '["127.0.0.1/32"]',
        }  # fmt: skip
        replicas = [Replica("A", env, base), Replica("B", env, base)]
        for r in replicas:
            await r.start()
        await _add_agents(pg.url, args.agents)
        log(f"{len(replicas)} replicas up; {args.customers} customers, {args.agents} agents")

        stop = asyncio.Event()
        customers = [Customer(i) for i in range(args.customers)]
        stats: dict[str, Any] = {"claimed": 0, "resolved": 0, "relogins": 0}
        stats["agent_error_kinds"] = {}
        tasks = [asyncio.create_task(run_customer(c, replicas, stop)) for c in customers]
        tasks += [
            asyncio.create_task(run_agent(i, replicas, stop, stats)) for i in range(args.agents)
        ]
        t0 = time.monotonic()
        faults = _faults(args.seconds)

        async def at(offset: float) -> None:
            await asyncio.sleep(max(0.0, t0 + offset - time.monotonic()))

        for offset, what in faults:
            await at(offset)
            log(f"fault: {what}")
            if what == "kill A":
                replicas[0].kill()
            elif what == "start A":
                await replicas[0].start()
            elif what == "restart redis":
                redis.stop()
                redis.start()
            elif what == "stop postgres":
                await asyncio.to_thread(pg.stop)
            elif what == "start postgres":
                await asyncio.to_thread(pg.start)
        await at(args.seconds)
        log("load stops; customers finish re-sending what was not acknowledged")
        stop.set()
        t_stop = time.monotonic()
        _, pending = await asyncio.wait(tasks, timeout=90)
        for t in pending:
            t.cancel()
        waiting = sum(len(c.unacked) for c in customers)
        log(f"clients done in {time.monotonic() - t_stop:.0f} s ({len(pending)} still running, "
            f"{waiting} messages never acknowledged)")  # fmt: skip
        left = await _drain(pg.url, timeout=300)  # the replicas work through their backlog
        log(f"backlog worked through ({left} customer messages still unprocessed)")
        ok = await _check(pg.url, env, customers, stats)
        _report_failed_frames(base)
        return 0 if ok else 1
    finally:
        for r in replicas:
            r.stop()
        if nlu is not None:
            await nlu.stop()
        redis.stop()
        with contextlib.suppress(Exception):
            pg.stop()
        if args.keep:
            log(f"run folder kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def _report_failed_frames(base: Path) -> None:
    """What the `internal` refusals were: each replica's "widget frame failed" log lines,
    by the exception that ended their traceback."""
    causes: dict[str, int] = {}
    for path in sorted(base.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if '"widget frame failed"' not in line:
                continue
            with contextlib.suppress(ValueError):
                exc = str(json.loads(line).get("exc") or "").strip().splitlines()
                cause = f"{path.stem}: {exc[-1] if exc else '(no traceback)'}"
                causes[cause] = causes.get(cause, 0) + 1
    for cause, n in sorted(causes.items()):
        log(f"internal refusal ×{n}: {cause[:300]}")


def _faults(seconds: float) -> list[tuple[float, str]]:
    s = seconds / 60
    return [(10 * s, "kill A"), (15 * s, "start A"), (25 * s, "restart redis"),
            (38 * s, "stop postgres"), (38 * s + 10, "start postgres")]  # fmt: skip


async def _drain(url: str, timeout: float) -> int:
    """Wait until no customer message is unprocessed (or `timeout`); how many are left."""
    from bot.core.store.db import Database

    db = Database(url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            left = len(await db.unprocessed_customer_messages(limit=100_000))
            if left == 0 or time.monotonic() > deadline:
                return left
            log(f"{left} customer messages still in the replicas' backlog")
            await asyncio.sleep(5)
    finally:
        await db.close()


async def _add_agents(url: str, n: int) -> None:
    from bot.auth.accounts import Accounts
    from bot.core.store.db import Database

    db = Database(url)
    try:
        accounts = Accounts(db)
        for i in range(n):
            await accounts.add(f"agent{i}", PASSWORD, role="agent", queues=list(QUEUES))
    finally:
        await db.close()


async def _check(url: str, env: dict[str, str], customers: list[Customer], stats: dict) -> bool:
    import redis.asyncio as aioredis
    from sqlalchemy import select

    from bot.core.store.db import Database
    from bot.core.store.models import Conversation, Message

    db = Database(url)
    r = aioredis.Redis.from_url(env["REDIS_URL"], decode_responses=True)
    prefix = env["CARELINE_REDIS_PREFIX"]
    try:
        async with db.sql_sessions() as s:
            messages = list((await s.scalars(select(Message))).all())
            convs = list((await s.scalars(select(Conversation))).all())
        customer_msgs = {m.client_msg_id: m for m in messages if m.sender == "customer"}
        acked = {cid for c in customers for cid in c.acked}
        missing = sorted(acked - set(customer_msgs))
        unprocessed = [m for m in customer_msgs.values() if m.processed_at is None]
        answers: dict[str, int] = {}
        for m in messages:
            key = m.client_msg_id or ""
            if m.sender == "bot" and key.startswith("re-") and key.endswith("-answer"):
                answers[key] = answers.get(key, 0) + 1
        twice = [k for k, n in answers.items() if n > 1]
        stranded = []
        for conv in convs:
            if conv.state not in ("WAITING_AGENT", "WITH_AGENT"):
                continue
            chat = await r.hgetall(f"{prefix}:chat:{conv.id}")
            deadline = await r.zscore(f"{prefix}:sla", conv.id)
            in_line = chat.get("state") in ("waiting", "assigned")
            clock_ok = deadline is not None or conv.first_human_reply_at is not None
            if not (in_line and clock_ok):
                stranded.append(conv.id)
        dup_customers = [c.n for c in customers if len(c.wire) != len(set(c.wire))]
        escalated = sum(1 for c in convs if c.escalated_at is not None)
        refused: dict[str, int] = {}
        for c in customers:
            for code, n in c.refused.items():
                refused[code] = refused.get(code, 0) + n
        given_up = sum(c.given_up for c in customers)
        print("| what | count |")
        print("|---|---:|")
        for label, value in [
            ("customers", len(customers)),
            ("reconnects (dropped sockets)", sum(c.reconnects for c in customers)),
            ("customer messages acknowledged", len(acked)),
            ("... refused by the server (error frames, by code)", _kinds(refused)),
            ("... given up (refused for good, never acknowledged)", given_up),
            ("... missing from SQL", len(missing)),
            ("customer messages stored", len(customer_msgs)),
            ("... not processed", len(unprocessed)),
            ("bot answers", sum(answers.values())),
            ("... messages answered twice", len(twice)),
            ("conversations escalated", escalated),
            ("chats claimed / resolved by agents", f"{stats['claimed']} / {stats['resolved']}"),
            ("agent requests failed (by kind)", _kinds(stats["agent_error_kinds"])),
            ("agents signed in again (session lost)", stats["relogins"]),
            ("open handoffs stranded (not in line or no deadline)", len(stranded)),
            ("customers who saw a message twice", len(dup_customers)),
        ]:
            print(f"| {label} | {value} |")
        return not (missing or unprocessed or twice or stranded or dup_customers)
    finally:
        await r.aclose()
        await db.close()


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "0"


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
