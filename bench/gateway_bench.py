"""Gateway load benchmark: N website-widget clients against careline vs stock `rasa run` REST.

Why this exists: careline answers over its own gateway (WebSocket widget -> durable store ->
Redis inbox -> NLU service) instead of Rasa's in-process REST channel. This measures what that
costs or saves under the same closed-loop load (each client waits for the bot's reply before
asking its next question, like a person) on one machine: throughput, send->reply latency and
peak memory. Everything is started here and stopped again, so one command reproduces a row of
docs/BENCHMARKS.md.

    .venv/bin/python bench/gateway_bench.py            # N=100 and N=1000, 3 messages each
    .venv/bin/python bench/gateway_bench.py --quick    # smoke check: N=20, 2 messages

Progress goes to stderr; the Markdown table goes to stdout; logs of every process started
stay in the run folder under /tmp (printed at the start).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import yaml
from common import (  # bench/common.py (this folder is on sys.path when run as a script)
    RssSampler,
    cpu_seconds,
    fmt,
    log_tail,
    peer_env,
    percentile,
    proc_table,
    ratio,
    say,
    spawn,
    stop_process,
    wait_for_quiet_machine,
    wait_http,
)

from bot.channels.widget_client import WidgetClient
from bot.conversation.content import Content
from bot.core.settings import Settings, load_settings
from bot.core.store.scratch import temporary_schema
from nlu.datasets import load_rasa_nlu
from nlu.fingerprint import RECIPE_VERSION, rasa_config
from nlu.process import NLUServiceProcess, free_port
from nlu.training import LEXICON_DATA, ensure_project_model, project_model

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PEER_CACHE = Path("/tmp/careline-bench-peer")
PEER_RECIPE = "peer/1"  # bump when the stock project layout below changes
WARMUP_MESSAGES = 5
SETTLE_S = 3.0  # between phases: let the previous phase's sockets close and queues drain
LOCALE = "vi"
# Rate limits the bench must lift: every simulated visitor shares 127.0.0.1.
BENCH_LIMITS = {
    "CARELINE__WIDGET__RATE_PER_IP_PER_MINUTE": "100000000",
    "CARELINE__WIDGET__MAX_CONNECTIONS_PER_IP": "1000000",
}


# -- load plan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSpec:
    index: int
    delay_s: float  # start offset: clients arrive staggered, not as one thundering herd
    texts: tuple[str, ...]


def faq_questions(settings: Settings) -> list[str]:
    """Held-out texts (never trained on) of intents the bot answers itself.

    Escalating intents are left out: a conversation handed to a person gets no more bot
    replies, which would measure the handoff policy, not the gateway.
    """
    content = load_content(settings)
    examples = load_rasa_nlu(settings.path(settings.nlu.heldout))
    texts = [
        ex.text
        for ex in examples
        if (info := content.intents.get(ex.intent)) is not None and info.action == "answer"
    ]
    if not texts:
        raise SystemExit(f"no answerable held-out examples in {settings.nlu.heldout}")
    return texts


def build_plan(questions: Sequence[str], n: int, k: int, stagger_s: float, seed: int) -> list:
    """The same clients and texts for both systems, so the comparison is like for like."""
    pool = list(questions)
    random.Random(seed).shuffle(pool)
    return [
        ClientSpec(i, i * stagger_s / n, tuple(pool[(i * k + j) % len(pool)] for j in range(k)))
        for i in range(n)
    ]


# -- measurement -----------------------------------------------------------------------------


@dataclass
class Recorder:
    """What the clients of one phase observed."""

    planned: int
    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    handoffs: int = 0
    connect_s: list[float] = field(default_factory=list)  # hello -> welcome (careline)
    samples: dict[str, str] = field(default_factory=dict)  # one message per error kind

    def reply(self, seconds: float) -> None:
        self.latencies_s.append(seconds)

    def error(self, kind: str, exc: BaseException | None = None) -> None:
        self.errors[kind] += 1
        if exc is not None:
            self.samples.setdefault(kind, f"{type(exc).__name__}: {exc}"[:300])


def service_pids() -> dict[str, int]:
    """The shared PostgreSQL and Redis servers (their CPU is part of careline's cost; other
    users of them are counted too, so read it as an upper bound)."""
    names = {"postgres": "postgres", "redis-server": "redis"}
    found: dict[str, int] = {}
    for pid, (ppid, _) in proc_table().items():
        comm = _comm(pid)
        if comm in names and _comm(ppid) != comm:  # the server itself, not its backends
            found.setdefault(names[comm], pid)
    return found


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="ascii", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full
    (TcpExt ListenOverflows, machine-wide). Such a client retries its SYN after 1, 3, 7, 15 s
    ... while the server may sit idle: a latency tail that is not the server's CPU."""
    with open("/proc/net/netstat", encoding="ascii") as fh:
        lines = [line.split() for line in fh if line.startswith("TcpExt:")]
    names, values = lines[0], lines[1]
    return int(values[names.index("ListenOverflows")])


@dataclass
class PhaseResult:
    system: str
    n: int
    messages_per_client: int
    planned: int
    sent: int
    replies: int
    errors: dict[str, int]
    handoffs: int
    seconds: float
    msg_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    max_ms: float | None
    peak_rss_mb: dict[str, float]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    latencies_ms: list[float] = field(repr=False)
    connect_p50_ms: float | None = None  # careline: hello -> welcome
    connect_p99_ms: float | None = None
    error_samples: dict[str, str] = field(default_factory=dict)
    listen_overflows: int = 0  # machine-wide, during the phase
    server_metrics: dict[str, float] = field(default_factory=dict)  # Prometheus deltas
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU time used during the phase

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


# -- careline clients ------------------------------------------------------------------------


class GatewayErrorFrame(Exception):
    """The gateway answered a message with an `error` frame (rate_limited, internal, ...)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


async def widget_reply(client: WidgetClient, cid: str, timeout: float) -> tuple[float, bool]:
    """Wait for the bot's answer to message `cid`; return (arrival time, handed off).

    The answer is the first bot/system message stored after ours (id > the ack's
    message_id), which also skips a late second line of an earlier turn. It may arrive
    before the ack, so messages are buffered until the ack says which id is ours.
    """
    deadline = time.perf_counter() + timeout
    ack_id: int | None = None
    replies: list[tuple[int, float, str]] = []
    handed_off = False
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError("no reply")
        frame = await client.recv(timeout=left)
        now = time.perf_counter()
        kind = frame.get("type")
        if kind == "error":
            raise GatewayErrorFrame(str(frame.get("code")))
        if kind == "ack" and frame.get("client_msg_id") == cid:
            ack_id = int(frame["message_id"])
        elif kind == "event":
            event = frame["event"]
            if event["kind"] == "state" and event["state"] != "BOT":
                handed_off = True
            elif event["kind"] == "message" and event["message"]["sender"] != "customer":
                msg = event["message"]
                replies.append((int(msg["id"]), now, msg["sender"]))
        if ack_id is not None:
            for mid, at, sender in replies:
                if mid > ack_id:
                    return at, handed_off or sender == "system"


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, GatewayErrorFrame):
        return f"error_frame:{exc.code}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionError | aiohttp.ClientConnectionError):
        return f"connection:{type(exc).__name__}"
    return f"exception:{type(exc).__name__}"


async def widget_client(
    spec: ClientSpec, rec: Recorder, *, ws_url: str, reply_timeout: float
) -> None:
    """One visitor: connect, ask its questions one after another, leave.

    A visitor handed to a person stops asking the bot (it would not answer any more);
    that is counted as a handoff, not an error.
    """
    await asyncio.sleep(spec.delay_s)
    client = WidgetClient(ws_url, locale=LOCALE)
    try:
        started = time.perf_counter()
        try:
            # WidgetClient.connect waits at most 15 s for `welcome` (its expect() default).
            welcome = await asyncio.wait_for(client.connect(), reply_timeout)
        except (TimeoutError, ConnectionError, aiohttp.ClientError) as exc:
            rec.error(f"connect:{error_kind(exc)}", exc)
            return
        if welcome["type"] != "welcome":
            rec.error(f"connect:error_frame:{welcome.get('code')}")
            return
        rec.connect_s.append(time.perf_counter() - started)
        for text in spec.texts:
            started = time.perf_counter()
            cid = await client.say(text)
            rec.sent += 1
            arrived, handed_off = await widget_reply(client, cid, reply_timeout)
            rec.reply(arrived - started)
            if handed_off:
                rec.handoffs += 1
                return
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        rec.error(f"reply:{error_kind(exc)}", exc)
    finally:
        with contextlib.suppress(Exception):
            await client.close()


async def widget_warmup(ws_url: str, questions: Sequence[str], timeout: float) -> None:
    """A few messages before measuring: first parses pay TensorFlow's tracing cost."""
    rec = Recorder(planned=WARMUP_MESSAGES)
    spec = ClientSpec(-1, 0.0, tuple(questions[:WARMUP_MESSAGES]))
    await widget_client(spec, rec, ws_url=ws_url, reply_timeout=timeout)
    if rec.errors:
        raise RuntimeError(f"careline warm-up failed: {dict(rec.errors)}")


# -- stock rasa clients ----------------------------------------------------------------------


async def rest_client(
    spec: ClientSpec,
    rec: Recorder,
    *,
    url: str,
    http: aiohttp.ClientSession,
    reply_timeout: float,
) -> None:
    """The same visitor against Rasa's REST channel: the HTTP response carries the reply."""
    await asyncio.sleep(spec.delay_s)
    sender = f"bench-{uuid.uuid4().hex[:12]}"
    timeout = aiohttp.ClientTimeout(total=reply_timeout)
    try:
        for text in spec.texts:
            started = time.perf_counter()
            rec.sent += 1
            async with http.post(
                url, json={"sender": sender, "message": text}, timeout=timeout
            ) as resp:
                body = await resp.json(content_type=None) if resp.status == 200 else None
            if resp.status != 200:
                rec.error(f"reply:http_{resp.status}")
                return
            if not body:
                rec.error("reply:empty")
                return
            rec.reply(time.perf_counter() - started)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        rec.error(f"reply:{error_kind(exc)}", exc)


# -- phases ----------------------------------------------------------------------------------


ClientFn = Callable[[ClientSpec, Recorder], Awaitable[None]]


async def scrape_all(urls: Sequence[str]) -> dict[str, float]:
    """careline's own counters (Prometheus text), to split latency into NLU time and the
    rest of the gateway; a failed scrape only loses this breakdown, not the run."""
    out: dict[str, float] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for url in urls:
            try:
                async with http.get(url) as resp:
                    text = await resp.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                say(f"could not scrape {url}: {exc!r}")
                continue
            for line in text.splitlines():
                name, _, value = line.rpartition(" ")
                if name.startswith("careline_") and not name.split("{")[0].endswith("_created"):
                    with contextlib.suppress(ValueError):
                        out[name] = float(value)
    return out


def metric_deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Counter/histogram growth during the phase (sums, counts, totals; not buckets)."""
    keep = ("_sum", "_count", "_total")
    return {
        name: round(value - before.get(name, 0.0), 6)
        for name, value in after.items()
        if name.split("{")[0].endswith(keep) and value != before.get(name, 0.0)
    }


async def _progress(label: str, rec: Recorder, started: float) -> None:
    while True:
        await asyncio.sleep(2)
        say(
            f"{label}: {len(rec.latencies_s)}/{rec.planned} replies, "
            f"{sum(rec.errors.values())} errors, {rec.handoffs} handoffs, "
            f"{time.perf_counter() - started:.0f} s"
        )


@dataclass
class Counters:
    """Cumulative counters read before and after a phase; the report shows the growth."""

    cpu: dict[str, float]
    overflows: int
    metrics: dict[str, float]

    @classmethod
    async def take(cls, cpu_roots: dict[str, int], metrics_urls: Sequence[str]) -> Counters:
        cpu = {**cpu_seconds(cpu_roots), "load generator": time.process_time()}
        return cls(cpu, listen_overflows(), await scrape_all(metrics_urls))


async def run_phase(
    system: str,
    plan: Sequence[ClientSpec],
    client_fn: ClientFn,
    sampler: RssSampler,
    timeout_s: float,
    metrics_urls: Sequence[str] = (),
) -> PhaseResult:
    """Run every client of one (system, N) cell; bounded by a global timeout."""
    await asyncio.sleep(SETTLE_S)
    n, k = len(plan), len(plan[0].texts)
    rec = Recorder(planned=n * k)
    label = f"{system} N={n}"
    say(f"{label}: starting {n} clients x {k} messages (load {os.getloadavg()[0]:.2f})")
    load_before = os.getloadavg()
    cpu_roots = {**sampler.roots, **(service_pids() if metrics_urls else {})}  # careline: PG+Redis
    before = await Counters.take(cpu_roots, metrics_urls)
    sampler.reset()
    started = time.perf_counter()
    tasks = [asyncio.create_task(client_fn(spec, rec)) for spec in plan]
    progress = asyncio.create_task(_progress(label, rec, started))
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
        rec.error("phase_timeout")
    await asyncio.gather(*pending, return_exceptions=True)
    seconds = time.perf_counter() - started
    progress.cancel()
    result = _result(system, n, k, rec, seconds, sampler, load_before)
    after = await Counters.take(cpu_roots, metrics_urls)
    result.cpu_s = {name: round(after.cpu[name] - before.cpu[name], 2) for name in after.cpu}
    result.listen_overflows = after.overflows - before.overflows
    result.server_metrics = metric_deltas(before.metrics, after.metrics)
    say(
        f"{label}: done in {seconds:.1f} s: {result.replies} replies, "
        f"{result.error_count} errors{' ' + str(dict(rec.errors)) if rec.errors else ''}, "
        f"{rec.handoffs} handoffs"
    )
    return result


def _result(
    system: str,
    n: int,
    k: int,
    rec: Recorder,
    seconds: float,
    sampler: RssSampler,
    load_before: tuple[float, float, float],
) -> PhaseResult:
    ms = [s * 1000 for s in rec.latencies_s]
    connect = [s * 1000 for s in rec.connect_s]
    return PhaseResult(
        system=system,
        n=n,
        messages_per_client=k,
        planned=rec.planned,
        sent=rec.sent,
        replies=len(ms),
        errors=dict(rec.errors),
        handoffs=rec.handoffs,
        seconds=seconds,
        msg_per_s=len(ms) / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(ms, 50),
        p99_ms=percentile(ms, 99),
        mean_ms=sum(ms) / len(ms) if ms else None,
        max_ms=max(ms) if ms else None,
        peak_rss_mb=sampler.peaks_mb(),
        load_before=load_before,
        load_after=os.getloadavg(),
        latencies_ms=[round(v, 2) for v in ms],
        connect_p50_ms=percentile(connect, 50),
        connect_p99_ms=percentile(connect, 99),
        error_samples=dict(rec.samples),
    )


# -- processes -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def pg_schema(db: str) -> AsyncIterator[str | None]:
    """A fresh PostgreSQL schema for this run (dropped afterwards), or None for SQLite."""
    if db != "postgresql":
        yield None
        return
    async with temporary_schema(PG_URL, "bench") as name:
        yield name


async def drop_redis_prefix(prefix: str) -> int:
    """Remove this run's keys from the shared Redis (event logs, inbox, rate windows)."""
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])
        return len(keys)
    finally:
        await client.aclose()


def gateway_env(nlu_url: str, prefix: str, schema: str | None, run_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARELINE__")}
    env.update(BENCH_LIMITS)
    env.update(NLU_URL=nlu_url, REDIS_URL=REDIS_URL, CARELINE_REDIS_PREFIX=prefix)
    env["PYTHONUNBUFFERED"] = "1"
    if schema is None:
        env["DATABASE_URL"] = f"sqlite+aiosqlite:///{run_dir / 'careline.db'}"
    else:
        env["DATABASE_URL"] = PG_URL
        env["CARELINE__DATABASE__PG_SCHEMA"] = schema
    return env


@dataclass
class Stack:
    """A running system under test: where clients connect, which processes to measure."""

    url: str
    pids: dict[str, int]
    metrics_urls: tuple[str, ...] = ()  # Prometheus endpoints, scraped around each phase


@contextlib.asynccontextmanager
async def careline_stack(settings: Settings, db: str, run_dir: Path) -> AsyncIterator[Stack]:
    """NLU service + gateway as separate processes, the way production runs them."""
    model = await asyncio.to_thread(ensure_project_model, settings)
    nlu = NLUServiceProcess(settings, model, port=0, log_path=run_dir / "nlu.log")
    gateway = None
    prefix = f"bench{uuid.uuid4().hex[:10]}"
    async with pg_schema(db) as schema:
        try:
            say(f"careline: starting NLU service ({model.name}) on port {nlu.port}")
            nlu_url = await nlu.start()
            port = free_port()
            log = run_dir / "gateway.log"
            say(f"careline: starting gateway on port {port} ({db}; log {log})")
            gateway = await spawn(
                [str(Path(sys.executable).with_name("careline")), "run",
                 "--host", "127.0.0.1", "--port", str(port)],
                log, cwd=settings.root, env=gateway_env(nlu_url, prefix, schema, run_dir),
            )  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            await wait_http(url + "/readyz", gateway, log, 120, "careline gateway")
            assert nlu.proc is not None
            yield Stack(
                url + "/ws/widget",
                {"gateway": gateway.pid, "nlu": nlu.proc.pid},
                (url + "/metrics", nlu_url + "/metrics"),
            )
        finally:
            code = await stop_process(gateway)
            await nlu.stop()
            removed = await drop_redis_prefix(prefix)
            say(f"careline: stopped (gateway exit {code}); removed {removed} Redis keys")


# -- stock Rasa peer -------------------------------------------------------------------------


def load_content(settings: Settings) -> Content:
    return Content.load(
        settings.path(settings.nlu.responses),
        settings.root / "data" / "intents.yml",
        settings.business.placeholders(),
    )


def peer_files(settings: Settings) -> dict[str, str]:
    """The stock Rasa project: our pipeline + RulePolicy, one rule and one utterance per
    intent (the Vietnamese answer), and `utter_default` for nlu_fallback so a miss still
    gets a reply, as it does in careline (which asks a clarifying question)."""
    content = load_content(settings)
    intents = sorted({ex.intent for ex in load_rasa_nlu(settings.path(settings.nlu.data))})
    config = {**rasa_config(settings.config_path), "policies": [{"name": "RulePolicy"}]}
    responses = {f"utter_{i}": [{"text": content.answer(i, "vi") or f"({i})"}] for i in intents}
    responses["utter_default"] = [{"text": content.system("fallback", "vi")}]
    rules = [
        {"rule": f"answer {i}", "steps": [{"intent": i}, {"action": f"utter_{i}"}]} for i in intents
    ]
    rules.append(
        {"rule": "fallback", "steps": [{"intent": "nlu_fallback"}, {"action": "utter_default"}]}
    )

    def dump(doc: Any) -> str:
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=10_000)

    files = {
        "config.yml": dump(config),
        "domain.yml": dump({"version": "3.1", "intents": intents, "responses": responses}),
        "data/rules.yml": dump({"version": "3.1", "rules": rules}),
        "credentials.yml": dump({"rest": None}),
    }
    for f in sorted(settings.path(settings.nlu.data).glob("*.yml")):
        files[f"data/nlu/{f.name}"] = f.read_text(encoding="utf-8")
    # Our tokenizer reads its abbreviation table relative to the training cwd; Rasa itself
    # skips YAML files that are neither NLU data nor rules/stories.
    for f in sorted((settings.root / LEXICON_DATA).glob("*.yml")):
        files[f"{LEXICON_DATA}/{f.name}"] = f.read_text(encoding="utf-8")
    return files


def peer_project(settings: Settings) -> Path:
    """Write the peer project to /tmp under a hash of its inputs (never into the repo)."""
    files = peer_files(settings)
    # The project fingerprint also covers custom component code the pipeline may name.
    fingerprint = project_model(settings).fingerprint
    h = hashlib.sha256(f"{RECIPE_VERSION}|{PEER_RECIPE}|{fingerprint}".encode())
    for name, text in sorted(files.items()):
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    folder = PEER_CACHE / h.hexdigest()[:16]
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    return folder


def train_peer(settings: Settings, folder: Path, run_dir: Path) -> Path:
    """`rasa train` once per distinct input hash; reruns reuse the cached model."""
    model = folder / "models" / "peer.tar.gz"
    if model.is_file():
        say(f"stock: reusing cached model {model}")
        return model
    rasa = settings.path(settings.nlu.venv) / "bin" / "rasa"
    log = run_dir / "peer-train.log"
    say(f"stock: training the peer model with rasa train (log {log}); about 1-3 min")
    out = folder / ".train-out"
    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.run(
            [str(rasa), "train", "--fixed-model-name", "peer", "--out", str(out)],
            cwd=folder, env=peer_env(settings), stdout=fh, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    produced = out / "peer.tar.gz"
    if proc.returncode != 0 or not produced.is_file():
        raise RuntimeError(
            f"rasa train failed (exit {proc.returncode}); log {log}:\n{log_tail(log)}"
        )
    model.parent.mkdir(parents=True, exist_ok=True)
    os.replace(produced, model)  # atomic: an interrupted training never leaves a bad cache
    say(f"stock: trained in {time.monotonic() - started:.0f} s")
    return model


async def rest_warmup(url: str, timeout: float) -> None:
    """Wait until the REST channel answers, then warm TensorFlow like for careline."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for i in range(WARMUP_MESSAGES):
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    body = {"sender": "bench-warmup", "message": f"xin chào {i}"}
                    async with http.post(url, json=body) as resp:
                        if resp.status == 200 and await resp.json(content_type=None):
                            break
                if time.monotonic() > deadline:
                    raise RuntimeError("stock rasa run: REST channel did not answer")
                await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def stock_stack(settings: Settings, run_dir: Path, model: Path) -> AsyncIterator[Stack]:
    """Stock `rasa run` with the REST channel on a model trained from the same pipeline."""
    folder = model.parent.parent
    port = free_port()
    log = run_dir / "rasa-run.log"
    rasa = settings.path(settings.nlu.venv) / "bin" / "rasa"
    say(f"stock: starting rasa run on port {port} (log {log})")
    proc = await spawn(
        [str(rasa), "run", "--enable-api", "-i", "127.0.0.1", "-p", str(port),
         "--credentials", "credentials.yml", "-m", str(model)],
        log, cwd=folder, env=peer_env(settings),
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_http(url + "/", proc, log, 240, "stock rasa run")
        webhook = url + "/webhooks/rest/webhook"
        await rest_warmup(webhook, 120)
        yield Stack(webhook, {"gateway": proc.pid})
    finally:
        code = await stop_process(proc)
        say(f"stock: stopped (rasa run exit {code})")


# -- orchestration ---------------------------------------------------------------------------


def raise_fd_limit(n_max: int) -> tuple[int, int]:
    """Each client holds a socket here and one in the server (children inherit the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * n_max + 1024
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


async def measure_careline(
    settings: Settings, args: argparse.Namespace, run_dir: Path, questions: Sequence[str]
) -> list[PhaseResult]:
    results = []
    async with careline_stack(settings, args.db, run_dir) as stack:
        await widget_warmup(stack.url, questions, args.reply_timeout)
        sampler = RssSampler(stack.pids).start()
        try:
            for n in args.clients:
                plan = build_plan(questions, n, args.messages_per_client, args.stagger, args.seed)
                client = functools.partial(
                    widget_client, ws_url=stack.url, reply_timeout=args.reply_timeout
                )
                results.append(
                    await run_phase(
                        "careline", plan, client, sampler, args.timeout, stack.metrics_urls
                    )
                )
        finally:
            sampler.stop()
    return results


async def measure_stock(
    settings: Settings,
    args: argparse.Namespace,
    run_dir: Path,
    questions: Sequence[str],
    model: Path,
) -> list[PhaseResult]:
    results = []
    async with stock_stack(settings, run_dir, model) as stack:
        sampler = RssSampler(stack.pids).start()
        try:
            for n in args.clients:
                plan = build_plan(questions, n, args.messages_per_client, args.stagger, args.seed)
                connector = aiohttp.TCPConnector(limit=n, limit_per_host=n)
                async with aiohttp.ClientSession(connector=connector) as http:
                    client = functools.partial(
                        rest_client, url=stack.url, http=http, reply_timeout=args.reply_timeout
                    )
                    results.append(
                        await run_phase("stock rasa run", plan, client, sampler, args.timeout)
                    )
        finally:
            sampler.stop()
    return results


# -- report ----------------------------------------------------------------------------------


def markdown_table(results: Sequence[PhaseResult]) -> str:
    """Both systems per N, then careline/stock ratios (msg/s: higher is better for careline;
    latency and memory: lower is better)."""
    head = (
        "| system | N | messages | errors | msg/s | p50 ms | p99 ms "
        "| peak RSS gateway MB | peak RSS NLU MB | peak RSS total MB |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = [head]
    for n in sorted({r.n for r in results}):
        cell = {r.system: r for r in results if r.n == n}
        for r in cell.values():
            rss = r.peak_rss_mb
            nlu = fmt(rss["nlu"]) if "nlu" in rss else "(in process)"
            rows.append(
                f"| {r.system} | {r.n} | {r.replies} | {r.error_count} | {fmt(r.msg_per_s, 1)} "
                f"| {fmt(r.p50_ms)} | {fmt(r.p99_ms)} | {fmt(rss['gateway'])} | {nlu} "
                f"| {fmt(sum(rss.values()))} |"
            )
        c, s = cell.get("careline"), cell.get("stock rasa run")
        if c and s:
            rows.append(
                f"| careline/stock | {n} | | | {ratio(c.msg_per_s, s.msg_per_s)} "
                f"| {ratio(c.p50_ms, s.p50_ms)} | {ratio(c.p99_ms, s.p99_ms)} | | "
                f"| {ratio(sum(c.peak_rss_mb.values()), sum(s.peak_rss_mb.values()))} |"
            )
    return "\n".join(rows)


def details(results: Sequence[PhaseResult]) -> str:
    """What the table leaves out: error kinds, handoffs, unsent messages, load, duration."""
    lines = []
    for r in results:
        errors = ", ".join(f"{k}={v}" for k, v in sorted(r.errors.items())) or "none"
        lines.append(
            f"- {r.system} N={r.n}: {r.replies}/{r.planned} answered in {r.seconds:.1f} s; "
            f"errors: {errors}; handoffs to a person: {r.handoffs}; "
            f"not sent: {r.planned - r.sent}; mean {fmt(r.mean_ms)} ms, max {fmt(r.max_ms)} ms; "
            f"load avg {r.load_before[0]:.2f} → {r.load_after[0]:.2f}"
        )
        if r.connect_p50_ms is not None:
            lines.append(
                f"  - connect (hello → welcome): p50 {fmt(r.connect_p50_ms)} ms, "
                f"p99 {fmt(r.connect_p99_ms)} ms"
            )
        if r.listen_overflows:
            lines.append(
                f"  - kernel listen-queue overflows during the phase: {r.listen_overflows} "
                "(SYNs dropped; those clients retried after 1, 3, 7, 15 s ...)"
            )
        for kind, sample in r.error_samples.items():
            lines.append(f"  - first {kind}: {sample}")
        cpu = ", ".join(
            f"{name} {sec:.1f} s ({1000 * sec / r.replies:.0f} ms/message)" if r.replies else name
            for name, sec in r.cpu_s.items()
        )
        lines.append(f"  - CPU time: {cpu} over {r.seconds:.1f} s wall (2 cores)")
        if r.server_metrics:
            lines.append(f"  - {server_breakdown(r.server_metrics)}")
    return "\n".join(lines)


def _mean_ms(m: dict[str, float], histogram: str) -> str:
    count = m.get(f"{histogram}_count", 0.0)
    return (
        f"{1000 * m.get(f'{histogram}_sum', 0.0) / count:.0f} ms (n={count:.0f})" if count else "—"
    )


def server_breakdown(m: dict[str, float]) -> str:
    """Where careline's time went, from its own metrics (means over the phase)."""
    replies = {
        name.split('kind="')[1].split('"')[0]: int(v)
        for name, v in m.items()
        if name.startswith("careline_bot_replies_total{")
    }
    return (
        f"gateway NLU call mean {_mean_ms(m, 'careline_nlu_call_seconds')}; "
        f"NLU service parse mean (queueing included) {_mean_ms(m, 'careline_nlu_parse_seconds')}; "
        f"bot replies by kind {replies}; escalations "
        f"{m.get('careline_escalations_total', 0):.0f}; NLU failures "
        f"{m.get('careline_nlu_failures_total', 0):.0f}"
    )


def gateway_log_summary(log: Path) -> dict[str, Any]:
    """Warnings and errors the gateway logged (JSON lines), for the owner to read."""
    counts: Counter[str] = Counter()
    samples: list[str] = []
    if not log.is_file():
        return {"counts": {}, "samples": []}
    for line in log.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            if "Traceback" in line or "Error" in line:
                counts["non-json error line"] += 1
                if len(samples) < 10:
                    samples.append(line[:500])
            continue
        if isinstance(doc, dict) and doc.get("level") in ("warning", "error", "critical"):
            counts[f"{doc['level']}: {doc.get('msg', '')[:80]}"] += 1
            if len(samples) < 10:
                samples.append(line[:500])
    return {"counts": dict(counts), "samples": samples}


def write_json(path: Path, args: argparse.Namespace, results: Sequence[PhaseResult],
               extra: dict[str, Any]) -> None:  # fmt: skip
    doc = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "results": [asdict(r) for r in results],
        **extra,
    }
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")


# -- CLI -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default="100,1000", help="comma-separated N values")
    p.add_argument("--messages-per-client", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="smoke check: N=20, 2 messages")
    p.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    p.add_argument("--systems", default="careline,stock", help="which systems to measure")
    p.add_argument("--stagger", type=float, default=2.0, help="client arrivals spread, s")
    p.add_argument("--reply-timeout", type=float, default=120.0, help="per message, s")
    p.add_argument("--timeout", type=float, default=900.0, help="per phase (system x N), s")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--max-load", type=float, default=None, help="first wait until the 1-min load is this low"
    )
    p.add_argument("--max-wait", type=float, default=1200.0, help="for --max-load, s")
    p.add_argument("--json", type=Path, help="also write raw numbers here")
    args = p.parse_args(argv)
    args.clients = [20] if args.quick else [int(x) for x in args.clients.split(",") if x]
    if args.quick:
        args.messages_per_client = 2
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - {"careline", "stock"}
    if unknown or not args.clients or args.messages_per_client < 1:
        p.error(f"bad --systems/--clients/--messages-per-client ({unknown or ''})")
    return args


async def amain(args: argparse.Namespace, run_dir: Path) -> int:
    begun = time.monotonic()
    settings = load_settings()
    limits = raise_fd_limit(max(args.clients))
    say(f"run folder {run_dir}; open files limit {limits[0]}")
    questions = faq_questions(settings)
    # Train whatever is missing first: training load must not overlap the measurements.
    await asyncio.to_thread(ensure_project_model, settings)
    peer_model = None
    if "stock" in args.systems:
        folder = await asyncio.to_thread(peer_project, settings)
        peer_model = await asyncio.to_thread(train_peer, settings, folder, run_dir)
    if args.max_load is not None:
        await asyncio.to_thread(wait_for_quiet_machine, args.max_load, args.max_wait)
    started = time.monotonic()
    results: list[PhaseResult] = []
    if "careline" in args.systems:
        results += await measure_careline(settings, args, run_dir, questions)
    if peer_model is not None:
        results += await measure_stock(settings, args, run_dir, questions, peer_model)
    total = time.monotonic() - started
    gw_log = gateway_log_summary(run_dir / "gateway.log")
    print(markdown_table(results))
    print()
    print(details(results))
    if gw_log["counts"]:
        say(f"gateway warnings/errors (see {run_dir / 'gateway.log'}): {gw_log['counts']}")
    wall = time.monotonic() - begun
    say(f"measuring took {total:.0f} s, {wall:.0f} s in all (training/waiting); logs {run_dir}")
    if args.json:
        extra = {"measure_seconds": total, "wall_seconds": wall, "run_dir": str(run_dir)}
        write_json(args.json, args, results, {**extra, "gateway_log": gw_log})
    failed = any(r.error_count for r in results)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run_dir = Path(f"/tmp/careline-bench-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    run_dir.mkdir(parents=True)
    return asyncio.run(amain(args, run_dir))


if __name__ == "__main__":
    sys.exit(main())
