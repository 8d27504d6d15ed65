"""Helpers shared by the benchmarks in bench/: process trees and their memory, starting and
stopping servers, waiting for a quiet machine, and the numbers formatting of the tables.

Both gateway_bench.py and nlu_bench.py compare careline with stock `rasa run` on the same
machine; sharing these keeps the two measuring the same things the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bot.core.settings import Settings

SAMPLE_EVERY_S = 0.2


def say(msg: str) -> None:
    """Progress for the person running the bench (stderr, so stdout stays the table)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile: an observed value, never an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, RSS kB) for every process (one /proc scan per sample)."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", encoding="ascii", errors="replace") as fh:
                status = fh.read()
        except OSError:
            continue
        ppid = rss = 0
        for line in status.splitlines():
            if line.startswith("PPid:"):
                ppid = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        table[int(entry.name)] = (ppid, rss)
    return table


def tree_rss_kb(root: int, table: dict[int, tuple[int, int]]) -> int:
    """RSS of a process plus all its descendants (rasa run may fork workers)."""
    return sum(table.get(pid, (0, 0))[1] for pid in tree_members(root, table))


def _cpu_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), after comm


def tree_members(root: int, table: dict[int, tuple[int, int]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


def cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU time used so far by each named process tree: tells a CPU-bound server from one
    that waits (on the NLU, the database, a lock)."""
    table = proc_table()
    hz = os.sysconf("SC_CLK_TCK")
    return {
        name: sum(_cpu_ticks(p) for p in tree_members(pid, table)) / hz
        for name, pid in roots.items()
    }


class RssSampler:
    """Peak RSS per named process tree, sampled every 0.2 s on a thread.

    A thread rather than an asyncio task: with 1000 clients the event loop is saturated and
    a task would sample late, missing exactly the peaks we want.
    """

    def __init__(self, roots: dict[str, int], every_s: float = SAMPLE_EVERY_S) -> None:
        self.roots = roots
        self.every_s = every_s
        self.peaks_kb: dict[str, int] = dict.fromkeys(roots, 0)
        self.last_kb: dict[str, int] = dict.fromkeys(roots, 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def reset(self) -> None:
        """Start a new peak window (one per phase)."""
        with self._lock:
            self.peaks_kb = dict(self.last_kb)

    def peaks_mb(self) -> dict[str, float]:
        with self._lock:
            return {name: kb / 1024 for name, kb in self.peaks_kb.items()}

    def _sample(self) -> None:
        table = proc_table()
        with self._lock:
            for name, pid in self.roots.items():
                kb = tree_rss_kb(pid, table)
                self.last_kb[name] = kb
                self.peaks_kb[name] = max(self.peaks_kb[name], kb)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()


def log_tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


async def spawn(cmd: Sequence[str], log: Path, *, cwd: Path, env: dict[str, str]) -> Any:
    """A child in its own session (Ctrl-C reaches only us; we stop it in order), output to
    a log file under the run folder."""
    with open(log, "ab") as fh:  # noqa: ASYNC230 - opening a local log file is instant
        return await asyncio.create_subprocess_exec(
            *cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )


async def stop_process(proc: Any, timeout: float = 20.0) -> int | None:
    """SIGTERM (both servers shut down cleanly on it), then SIGKILL if it hangs."""
    if proc is None or proc.returncode is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        return await proc.wait()


async def wait_http(url: str, proc: Any, log: Path, timeout: float, what: str) -> None:
    """Poll until `url` answers 200; fail early (with the log tail) if the process died."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
        while True:
            if proc.returncode is not None:
                raise RuntimeError(
                    f"{what} exited with {proc.returncode}; log {log}:\n{log_tail(log)}"
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{what} not ready after {timeout:.0f} s; log {log}:\n{log_tail(log)}"
                )
            await asyncio.sleep(0.5)


def peer_env(settings: Settings) -> dict[str, str]:
    """Stock Rasa's environment; the repo is importable only so that a pipeline naming our
    custom components (nlu.runtime.components.*) trains the same model."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(settings.root), env.get("PYTHONPATH")]))
    env.update(RASA_TELEMETRY_ENABLED="false", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning,ignore::FutureWarning")
    env.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
    return env


def wait_for_quiet_machine(max_load: float, max_wait_s: float) -> None:
    """Other engineers' training jobs share these 2 cores: wait for them before measuring."""
    waited = 0.0
    while os.getloadavg()[0] > max_load and waited < max_wait_s:
        say(f"load average {os.getloadavg()[0]:.2f} > {max_load}: waiting 60 s ({waited:.0f} s)")
        time.sleep(60)
        waited += 60
    say(f"load average now {os.getloadavg()[0]:.2f} (waited {waited:.0f} s)")


def stop_servers_on_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C: asyncio then cancels the benchmark, whose `finally` blocks
    stop the servers it started (a plain SIGTERM would leave them running)."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "—" if not a or not b else f"{a / b:.2f}×"


__all__ = [
    "SAMPLE_EVERY_S",
    "RssSampler",
    "cpu_seconds",
    "peer_env",
    "percentile",
    "say",
    "spawn",
    "stop_process",
    "tree_members",
    "tree_rss_kb",
    "wait_for_quiet_machine",
    "wait_http",
]
