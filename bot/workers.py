"""`careline run --workers N`: N gateway processes on one port, so a machine's cores all answer.

Why processes: a gateway is one event loop, so one process uses one core. Each worker is a
whole replica (its own inbox consumer, sockets and timers) on the shared Redis and SQL, as
replicas on several machines are; the kernel spreads new connections over the workers, which
all listen on the port with SO_REUSEPORT. This process only supervises: it starts the NLU
service once for all of them (unless NLU_URL names one), restarts a worker that dies, and
stops them all on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from bot.core.settings import Settings, SettingsError

log = logging.getLogger("careline.workers")

RESTART_AFTER_S = 1.0  # a worker that died is started again after this long
STOP_GRACE_S = 20.0  # a worker told to stop is killed after this long


def check_workers(settings: Settings, workers: int) -> None:
    """What several processes cannot share, refused before anything starts."""
    if workers < 1:
        raise SettingsError("--workers must be at least 1")
    if workers == 1:
        return
    if not settings.redis.url:
        raise SettingsError(
            "careline run --workers needs a shared Redis: set REDIS_URL (careline.redis.url; "
            "the in-process stand-in serves one process only)"
        )
    if settings.telegram.mode == "polling":
        raise SettingsError(
            "Telegram polling takes one process (two would fetch the same updates): "
            "run --workers 1, or use careline.telegram.mode: webhook"
        )


async def supervise(worker_argv: Sequence[str], workers: int, env: dict[str, str]) -> None:
    """Run `workers` copies of `worker_argv`, each started again if it exits, until this is
    cancelled (careline run's SIGINT/SIGTERM); then stop them all."""
    procs: dict[int, asyncio.subprocess.Process] = {}

    async def start(n: int) -> None:
        procs[n] = await asyncio.create_subprocess_exec(*worker_argv, env=env)
        print(f"worker {n + 1}/{workers} started (pid {procs[n].pid})", flush=True)

    try:
        for n in range(workers):
            await start(n)
        while True:
            waits = {asyncio.ensure_future(p.wait()): n for n, p in procs.items()}
            try:
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            for w in done:
                n = waits[w]
                log.error("worker %d exited with %s; starting it again in %.0f s",
                          n + 1, procs[n].returncode, RESTART_AFTER_S)  # fmt: skip
                await asyncio.sleep(RESTART_AFTER_S)
                await start(n)
    finally:
        await _stop_all(list(procs.values()))


async def _stop_all(procs: list[asyncio.subprocess.Process]) -> None:
    for p in procs:
        if p.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            await asyncio.wait_for(p.wait(), STOP_GRACE_S)
        except TimeoutError:
            log.error("worker pid %d did not stop in %.0f s; killing it", p.pid, STOP_GRACE_S)
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            await p.wait()


def worker_command(cli_args: Sequence[str]) -> list[str]:
    """The command line of one worker: this interpreter, `careline run` with the same
    arguments, bound with SO_REUSEPORT."""
    return [sys.executable, "-m", "bot.app", *cli_args, "--reuse-port"]


def worker_env(nlu_url: str) -> dict[str, str]:
    return {**os.environ, "NLU_URL": nlu_url}


__all__ = ["check_workers", "supervise", "worker_command", "worker_env"]
