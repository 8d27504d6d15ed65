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

The parts: gateway_workload.py (load plan, measurement), gateway_clients.py (clients,
phases), gateway_stacks.py (the systems started), gateway_report.py (the report).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from common import (  # bench/common.py (this folder is on sys.path when run as a script)
    RssSampler,
    say,
    wait_for_quiet_machine,
)
from gateway_clients import rest_client, run_phase, widget_client, widget_warmup
from gateway_report import details, gateway_log_summary, markdown_table, write_json
from gateway_stacks import careline_stack, peer_project, stock_stack, train_peer
from gateway_workload import STOCK, STOCK_SQL, PhaseResult, build_plan, faq_questions

from bot.core.settings import Settings, load_settings
from nlu.training import ensure_project_model

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
    for workers in args.workers:
        name = "careline" if workers == 1 else f"careline --workers {workers}"
        async with careline_stack(settings, args.db, run_dir, workers) as stack:
            await widget_warmup(stack.url, questions, args.reply_timeout)
            sampler = RssSampler(stack.pids).start()
            try:
                for n in args.clients:
                    plan = build_plan(
                        questions, n, args.messages_per_client, args.stagger, args.seed
                    )
                    client = functools.partial(
                        widget_client, ws_url=stack.url, reply_timeout=args.reply_timeout
                    )
                    results.append(
                        await run_phase(
                            name,
                            plan,
                            client,
                            sampler,
                            args.timeout,
                            stack.metrics_urls,
                            services=stack.services,
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
    *,
    sql_tracker: bool = False,
) -> list[PhaseResult]:
    results = []
    name = STOCK_SQL if sql_tracker else STOCK
    async with stock_stack(settings, run_dir, model, sql_tracker=sql_tracker) as stack:
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
                        await run_phase(
                            name, plan, client, sampler, args.timeout, services=stack.services
                        )
                    )
        finally:
            sampler.stop()
    return results


# -- CLI -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default="100,1000", help="comma-separated N values")
    p.add_argument("--messages-per-client", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="smoke check: N=20, 2 messages")
    p.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    p.add_argument(
        "--systems",
        default="careline,stock,stock-sql",
        help="which systems to measure: careline, stock (rasa run, trackers in memory), "
        "stock-sql (rasa run with SQLTrackerStore on the same PostgreSQL)",
    )
    p.add_argument(
        "--workers", default="1", help="careline run --workers values, comma-separated (e.g. 1,2)"
    )
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
    args.workers = [int(x) for x in args.workers.split(",") if x]
    unknown = set(args.systems) - {"careline", "stock", "stock-sql"}
    if unknown or not args.clients or args.messages_per_client < 1 or min(args.workers) < 1:
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
    if {"stock", "stock-sql"} & set(args.systems):
        folder = await asyncio.to_thread(peer_project, settings)
        peer_model = await asyncio.to_thread(train_peer, settings, folder, run_dir)
    if args.max_load is not None:
        await asyncio.to_thread(wait_for_quiet_machine, args.max_load, args.max_wait)
    started = time.monotonic()
    results: list[PhaseResult] = []
    if "careline" in args.systems:
        results += await measure_careline(settings, args, run_dir, questions)
    if peer_model is not None and "stock" in args.systems:
        results += await measure_stock(settings, args, run_dir, questions, peer_model)
    if peer_model is not None and "stock-sql" in args.systems:
        results += await measure_stock(
            settings, args, run_dir, questions, peer_model, sql_tracker=True
        )
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
