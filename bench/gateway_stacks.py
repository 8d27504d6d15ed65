"""The systems the gateway bench compares, each started and stopped here: careline (NLU
service + gateway on PostgreSQL and Redis) and the stock Rasa peer trained on the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import redis.asyncio as aioredis
import yaml
from common import (  # bench/common.py (this folder is on sys.path when run as a script)
    log_tail,
    peer_env,
    say,
    spawn,
    stop_process,
    wait_http,
)
from gateway_workload import (
    BENCH_LIMITS,
    PEER_CACHE,
    PEER_RECIPE,
    PG_URL,
    REDIS_URL,
    WARMUP_MESSAGES,
    load_content,
)

from bot.core.settings import Settings
from bot.core.store.scratch import temporary_schema
from nlu.datasets import load_rasa_nlu
from nlu.fingerprint import RECIPE_VERSION, rasa_config
from nlu.process import NLUServiceProcess, free_port
from nlu.training import ensure_project_model, project_model

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
    services: bool = False  # stores in the shared PostgreSQL/Redis (their CPU is its cost)


@contextlib.asynccontextmanager
async def careline_stack(
    settings: Settings, db: str, run_dir: Path, workers: int = 1
) -> AsyncIterator[Stack]:
    """NLU service + gateway as separate processes, the way production runs them; with
    `workers` > 1, `careline run --workers N` (its CPU and memory are the whole tree's; its
    /metrics are those of whichever worker answers the scrape)."""
    model = await asyncio.to_thread(ensure_project_model, settings)
    nlu = NLUServiceProcess(settings, model, port=0, log_path=run_dir / "nlu.log")
    gateway = None
    prefix = f"bench{uuid.uuid4().hex[:10]}"
    async with pg_schema(db) as schema:
        try:
            say(f"careline: starting NLU service ({model.name}) on port {nlu.port}")
            nlu_url = await nlu.start()
            port = free_port()
            log = run_dir / ("gateway.log" if workers == 1 else f"gateway-w{workers}.log")
            say(f"careline: starting gateway on port {port} ({db}; log {log})")
            gateway = await spawn(
                [str(Path(sys.executable).with_name("careline")), "run",
                 "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
                log, cwd=settings.root, env=gateway_env(nlu_url, prefix, schema, run_dir),
            )  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            await wait_http(url + "/readyz", gateway, log, 120, "careline gateway")
            assert nlu.proc is not None
            yield Stack(
                url + "/ws/widget",
                {"gateway": gateway.pid, "nlu": nlu.proc.pid},
                (url + "/metrics", nlu_url + "/metrics"),
                services=True,
            )
        finally:
            code = await stop_process(gateway)
            await nlu.stop()
            removed = await drop_redis_prefix(prefix)
            say(f"careline: stopped (gateway exit {code}); removed {removed} Redis keys")


# -- stock Rasa peer -------------------------------------------------------------------------


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
            [str(rasa), "train", "--fixed-model-name", "peer", "--out", str(out),
             "--config", str(folder / "config.yml"), "--domain", str(folder / "domain.yml"),
             "--data", str(folder / "data")],
            # In the project root, like careline's own training: the pipeline's components
            # read their tables (abbreviations, token vectors, triage corpus) relative to it.
            cwd=settings.root, env=peer_env(settings), stdout=fh, stderr=subprocess.STDOUT,
            check=False,
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


def sql_tracker_endpoints(run_dir: Path) -> Path:
    """endpoints.yml for Rasa's SQLTrackerStore on the bench's PostgreSQL: the stock peer
    that, like careline, keeps every conversation's events in SQL."""
    url = urlsplit(PG_URL)
    endpoints = {
        "tracker_store": {
            "type": "SQL",
            "dialect": "postgresql",
            "url": url.hostname,
            "port": url.port or 5432,
            "db": url.path.lstrip("/"),
            "username": url.username,
        }
    }
    path = run_dir / "endpoints-sql.yml"
    path.write_text(yaml.safe_dump(endpoints), encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def stock_stack(
    settings: Settings, run_dir: Path, model: Path, *, sql_tracker: bool = False
) -> AsyncIterator[Stack]:
    """Stock `rasa run` with the REST channel on a model trained from the same pipeline;
    with `sql_tracker`, its trackers in PostgreSQL (a schema of its own, dropped after)
    instead of in memory."""
    folder = model.parent.parent
    port = free_port()
    name = "stock-sql" if sql_tracker else "stock"
    log = run_dir / f"rasa-run-{name}.log"
    rasa = settings.path(settings.nlu.venv) / "bin" / "rasa"
    argv = [str(rasa), "run", "--enable-api", "-i", "127.0.0.1", "-p", str(port),
            "--credentials", "credentials.yml", "-m", str(model)]  # fmt: skip
    env = peer_env(settings)
    async with contextlib.AsyncExitStack() as resources:
        if sql_tracker:
            schema = await resources.enter_async_context(temporary_schema(PG_URL, "rasa"))
            argv += ["--endpoints", str(sql_tracker_endpoints(run_dir))]
            env["POSTGRESQL_SCHEMA"] = schema  # Rasa's own setting for the tracker table
        say(f"{name}: starting rasa run on port {port} (log {log})")
        proc = await spawn(argv, log, cwd=folder, env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_http(url + "/", proc, log, 240, f"{name} rasa run")
            webhook = url + "/webhooks/rest/webhook"
            await rest_warmup(webhook, 120)
            yield Stack(webhook, {"gateway": proc.pid}, services=sql_tracker)
        finally:
            code = await stop_process(proc)
            say(f"{name}: stopped (rasa run exit {code})")
