"""NLU serving benchmark: careline's NLU service vs stock `rasa run --enable-api`, same model.

Why this exists: every customer message goes through `POST /model/parse`. careline serves
it with micro-batching (nlu/batching.py: concurrent requests share one model call) on a
small HTTP server of its own (nlu/runtime/http_server.py); stock Rasa parses one message
per request inside Sanic. This loads the project's trained model in both servers at once
and drives each, in turn, with closed-loop clients on loopback (each client sends its next
text as soon as the previous answer came back) at several concurrencies: messages/s,
p50/p99 latency, peak RSS, and ours/stock ratios. Each phase is split into rounds in which
the systems take turns, so drifting load on the shared machine hits both alike.

    .venv/bin/python bench/nlu_bench.py                    # c = 1, 16, 64; 8000 parses each
    .venv/bin/python bench/nlu_bench.py --quick            # smoke check: 200 parses each
    .venv/bin/python bench/nlu_bench.py --client wrk       # load from wrk (Debian's wrk)

Progress goes to stderr; the Markdown table to stdout; server logs stay in the run folder
under /tmp (printed at the start).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import wrk_load  # bench/wrk_load.py
from common import (  # bench/common.py (this folder is on sys.path when run as a script)
    RssSampler,
    fmt,
    peer_env,
    percentile,
    ratio,
    say,
    spawn,
    stop_process,
    stop_servers_on_sigterm,
    wait_for_quiet_machine,
    wait_http,
)

from bot.core.settings import Settings, load_settings
from nlu.datasets import load_rasa_nlu
from nlu.process import free_port
from nlu.training import ensure_project_model, nlu_env

SYSTEMS = ("ours", "stock")
WARMUP = 20
CHECK_TEXTS = 200  # parsed by both servers before measuring: same model, same answers
SETTLE_S = 2.0


@dataclass
class Phase:
    system: str
    concurrency: int
    requests: int
    ok: int
    errors: dict[str, int]
    seconds: float
    msg_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    peak_rss_mb: float
    load_before: float
    load_after: float


def texts(settings: Settings, seed: int) -> list[str]:
    """Real customer-style messages in both languages: the held-out split and data/nlu."""
    found = load_rasa_nlu(settings.path(settings.nlu.heldout)) + load_rasa_nlu(
        settings.path(settings.nlu.data)
    )
    out = sorted({e.text for e in found})
    random.Random(seed).shuffle(out)
    return out


@dataclass
class Server:
    name: str
    url: str  # base URL; parse at url + /model/parse
    pid: int


@contextlib.asynccontextmanager
async def ours(settings: Settings, model: Path, run_dir: Path, args: argparse.Namespace
               ) -> AsyncIterator[Server]:  # fmt: skip
    port = free_port()
    log = run_dir / "ours.log"
    cmd = [str(settings.nlu_python), "-m", "nlu.runtime.service", "--model", str(model),
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING",
           "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
           "--max-queue", str(args.max_queue),
           "--inline-budget-ms", str(args.inline_budget_ms)]  # fmt: skip
    say(f"ours: starting the NLU service on port {port} (log {log})")
    proc = await spawn(cmd, log, cwd=settings.root, env=nlu_env(settings))
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_http(url + "/readyz", proc, log, 240, "careline NLU service")
        yield Server("ours", url, proc.pid)
    finally:
        say(f"ours: stopped (exit {await stop_process(proc)})")


@contextlib.asynccontextmanager
async def stock(settings: Settings, model: Path, run_dir: Path) -> AsyncIterator[Server]:
    """Stock `rasa run --enable-api` on the very same model file (our components importable
    through PYTHONPATH, nothing else of ours)."""
    port = free_port()
    log = run_dir / "rasa-run.log"
    rasa = settings.path(settings.nlu.venv) / "bin" / "rasa"
    cmd = [str(rasa), "run", "--enable-api", "-i", "127.0.0.1", "-p", str(port), "-m",
           str(model)]  # fmt: skip
    say(f"stock: starting rasa run --enable-api on port {port} (log {log})")
    proc = await spawn(cmd, log, cwd=run_dir, env=peer_env(settings))
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_http(url + "/status", proc, log, 300, "stock rasa run")
        yield Server("stock", url, proc.pid)
    finally:
        say(f"stock: stopped (exit {await stop_process(proc)})")


async def parse_all(http: aiohttp.ClientSession, server: Server, batch: Sequence[str]
                    ) -> list[dict[str, Any]]:  # fmt: skip
    out = []
    for t in batch:
        async with http.post(server.url + "/model/parse", json={"text": t}) as resp:
            resp.raise_for_status()
            out.append(await resp.json())
    return out


def compare(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[int, float]:
    """(texts whose intent differs, largest confidence difference) between two servers."""
    differ, worst = 0, 0.0
    for x, y in zip(a, b, strict=True):
        differ += x["intent"]["name"] != y["intent"]["name"]
        worst = max(worst, abs(x["intent"]["confidence"] - y["intent"]["confidence"]))
    return differ, worst


@dataclass
class Round:
    """One round of one system: what its clients saw, and the server's peak memory."""

    latencies_ms: list[float]  # every answer's (Python client) or 1,000 quantiles (wrk)
    ok: int
    errors: Counter[str]
    seconds: float
    peak_rss_mb: float
    load_before: float
    load_after: float


async def run_round(server: Server, pool: Sequence[str], concurrency: int, n: int, offset: int,
                    sampler: RssSampler, timeout_s: float) -> Round:  # fmt: skip
    """`concurrency` clients share `n` parses; each sends its next when the last returned."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    next_index = 0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal next_index
        while next_index < n:
            i = next_index
            next_index += 1
            body = {"text": pool[(offset + i) % len(pool)]}
            started = time.perf_counter()
            try:
                async with http.post(server.url + "/model/parse", json=body) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors[f"http {resp.status}"] += 1
                        continue
            except (aiohttp.ClientError, TimeoutError) as e:
                errors[type(e).__name__] += 1
                continue
            latencies.append(time.perf_counter() - started)

    sampler.reset()
    load_before = os.getloadavg()[0]
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Round([x * 1000 for x in latencies], len(latencies), errors, seconds,
                 sampler.peaks_mb()[server.name], load_before, os.getloadavg()[0])  # fmt: skip


async def run_wrk_round(server: Server, inputs: tuple[Path, Path], concurrency: int,
                        seconds: float, offset: int, sampler: RssSampler, timeout_s: float
                        ) -> Round:  # fmt: skip
    """The same closed loop as `run_round`, driven by wrk for `seconds`."""
    sampler.reset()
    load_before = os.getloadavg()[0]
    r = await wrk_load.run(server.url + "/model/parse", *inputs, connections=concurrency,
                           seconds=seconds, offset=offset, timeout_s=timeout_s)  # fmt: skip
    return Round(r.quantiles_ms, r.ok, Counter(r.errors), r.seconds,
                 sampler.peaks_mb()[server.name], load_before, os.getloadavg()[0])  # fmt: skip


def phase(system: str, concurrency: int, rounds: Sequence[Round], quantiles: bool = False
          ) -> Phase:  # fmt: skip
    """One system's rounds at one concurrency, pooled: msg/s over their summed wall time,
    percentiles over all their latencies, the highest memory peak."""
    ok = sum(r.ok for r in rounds)
    seconds = sum(r.seconds for r in rounds)
    errors: Counter[str] = Counter()
    for r in rounds:
        errors.update(r.errors)
    if quantiles:  # wrk: each round's latency quantiles, weighted by its answers
        runs = [(r.latencies_ms, r.ok) for r in rounds]
        p50, p99 = wrk_load.pooled_percentile(runs, 50), wrk_load.pooled_percentile(runs, 99)
        mean = sum(sum(q) / len(q) * n for q, n in runs if q) / ok if ok else None
    else:
        ms = [x for r in rounds for x in r.latencies_ms]
        p50, p99, mean = percentile(ms, 50), percentile(ms, 99), sum(ms) / len(ms) if ms else None
    return Phase(
        system, concurrency, ok + sum(errors.values()), ok, dict(errors),
        round(seconds, 2), round(ok / seconds, 1) if seconds else 0.0, p50, p99, mean,
        round(max(r.peak_rss_mb for r in rounds), 1), rounds[0].load_before,
        rounds[-1].load_after,
    )  # fmt: skip


def concurrency_floor(concurrencies: Sequence[int]) -> int:
    """A round needs at least a few requests per client to mean anything."""
    return 4 * max(concurrencies)


def markdown(phases: Sequence[Phase]) -> str:
    """Per concurrency: both systems, then ours/stock (msg/s: higher is better for ours;
    latency and memory: lower is better)."""
    lines = [
        "| concurrency | system | msg/s | p50 ms | p99 ms | peak RSS MB | errors |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    by_c: dict[int, dict[str, Phase]] = {}
    for p in phases:
        by_c.setdefault(p.concurrency, {})[p.system] = p
    for c, row in sorted(by_c.items()):
        for name in SYSTEMS:
            if name in row:
                p = row[name]
                lines.append(
                    f"| {c} | {name} | {fmt(p.msg_per_s, 1)} | {fmt(p.p50_ms, 1)} | "
                    f"{fmt(p.p99_ms, 1)} | {fmt(p.peak_rss_mb)} | {sum(p.errors.values())} |"
                )
        if len(row) == 2:
            a, b = row["ours"], row["stock"]
            lines.append(
                f"| {c} | **ours/stock** | **{ratio(a.msg_per_s, b.msg_per_s)}** | "
                f"{ratio(a.p50_ms, b.p50_ms)} | {ratio(a.p99_ms, b.p99_ms)} | "
                f"{ratio(a.peak_rss_mb, b.peak_rss_mb)} | |"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--concurrency", default="1,16,64", help="comma-separated client counts")
    # 2000 per round: at ~2000 msg/s a shorter round is mostly connection set-up and ramp-down
    p.add_argument("--requests", type=int, default=8000, help="parses per system and phase")
    p.add_argument("--rounds", type=int, default=4, help="turns per phase (systems alternate)")
    p.add_argument("--quick", action="store_true", help="200 parses per phase")
    p.add_argument("--systems", default="ours,stock")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    p.add_argument("--max-load", type=float, help="wait until the load average is at most this")
    p.add_argument("--max-wait", type=float, default=1200.0, help="...for at most this long")
    p.add_argument("--max-batch", type=int, default=64, help="our service: texts per model call")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="our service: batching window")
    p.add_argument("--max-queue", type=int, default=512, help="our service: queue bound")
    p.add_argument("--inline-budget-ms", type=float, default=50.0,
                   help="our service: quick batches run on its loop")  # fmt: skip
    p.add_argument("--client", choices=("python", "wrk"), default="python",
                   help="load generator: an aiohttp client in this process, or wrk (needs "
                        "Debian's wrk; far less CPU per request, so the server under test "
                        "keeps more of the machine)")  # fmt: skip
    p.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        help="with --client wrk: seconds per round (instead of --requests)",
    )
    p.add_argument("--json", type=Path, help="also write the raw figures here")
    return p.parse_args(argv)


async def amain(args: argparse.Namespace, settings: Settings, run_dir: Path) -> int:
    model = ensure_project_model(settings)
    say(f"model {model.name}")
    pool = texts(settings, args.seed)
    systems = [s for s in args.systems.split(",") if s]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    n = 200 if args.quick else args.requests
    use_wrk = args.client == "wrk"
    if use_wrk and not wrk_load.available():
        say("error: --client wrk needs wrk on PATH (Debian: apt-get install wrk)")
        return 2
    inputs = wrk_load.write_inputs(run_dir, pool) if use_wrk else None
    seconds = 1.0 if args.quick else args.seconds
    async with contextlib.AsyncExitStack() as stack:
        servers: dict[str, Server] = {}
        if "ours" in systems:
            servers["ours"] = await stack.enter_async_context(ours(settings, model, run_dir, args))
        if "stock" in systems:
            servers["stock"] = await stack.enter_async_context(stock(settings, model, run_dir))
        check = pool[:CHECK_TEXTS]
        answers = {}
        async with aiohttp.ClientSession() as http:
            for name, server in servers.items():
                await parse_all(http, server, pool[-WARMUP:])  # warm up (TF graph, caches)
                answers[name] = await parse_all(http, server, check)
        if len(answers) == 2:
            differ, worst = compare(answers["ours"], answers["stock"])
            say(f"same model check on {len(check)} texts: {differ} intents differ, "
                f"largest confidence difference {worst:.2e}")  # fmt: skip
            if differ:
                say("WARNING: the two servers disagree; the comparison is not like for like")
        sampler = RssSampler({name: s.pid for name, s in servers.items()}).start()
        stack.callback(sampler.stop)
        if args.max_load is not None:
            await asyncio.to_thread(wait_for_quiet_machine, args.max_load, args.max_wait)
        phases: list[Phase] = []
        per_round = max(concurrency_floor(concurrencies), n // args.rounds)
        for c in concurrencies:
            rounds: dict[str, list[Round]] = {name: [] for name in servers}
            for k in range(args.rounds):
                # The machine is shared and its load drifts: the systems take turns in short
                # rounds, and who goes first alternates, so both see the same conditions.
                order = list(servers) if k % 2 == 0 else list(reversed(servers))
                for name in order:
                    if inputs is not None:
                        r = await run_wrk_round(servers[name], inputs, c, seconds,
                                                k * per_round, sampler, args.timeout)  # fmt: skip
                    else:
                        r = await run_round(servers[name], pool, c, per_round, k * per_round,
                                            sampler, args.timeout)  # fmt: skip
                    rounds[name].append(r)
                    say(f"  round {k + 1} {name}: {r.ok / r.seconds:.1f} msg/s "
                        f"(load {r.load_before:.1f})")  # fmt: skip
                    await asyncio.sleep(SETTLE_S)
            for name in servers:
                p = phase(name, c, rounds[name], quantiles=use_wrk)
                say(f"{name}: concurrency {c}: {p.msg_per_s} msg/s, p50 {fmt(p.p50_ms, 1)} ms, "
                    f"p99 {fmt(p.p99_ms, 1)} ms, errors {p.errors or 0}")  # fmt: skip
                phases.append(p)
    say(f"load generator: {'wrk' if use_wrk else 'aiohttp client in this process'}")
    print(markdown(phases))
    if args.json:
        args.json.write_text(json.dumps([asdict(p) for p in phases], indent=2))
    return 1 if any(p.errors for p in phases) else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings(None)
    run_dir = Path(f"/tmp/careline-nlu-bench-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    run_dir.mkdir(parents=True)
    say(f"run folder {run_dir}")
    stop_servers_on_sigterm()
    return asyncio.run(amain(args, settings, run_dir))


if __name__ == "__main__":
    sys.exit(main())
