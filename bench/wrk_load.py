"""Closed-loop HTTP load from wrk (C, event-driven) instead of a Python client.

Why: at a few thousand requests per second an aiohttp client spends about as much CPU per
request as the server under test, and on a 2-core machine it takes that CPU from the server:
the Python client then measures itself as much as the server. wrk drives the same
closed-loop pattern (each connection sends its next request when the answer arrives) for a
fraction of the CPU. Its latency histogram comes back as 1,000 quantiles per run, which
pool across rounds weighted by each run's request count.

wrk is Debian's `wrk` package (`apt-get install wrk`); nothing else of ours needs it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

QUANTILES = 1000  # latency quantiles reported per run: (i + 0.5) / 10 percent, i < 1000

# Each connection posts the next body from the file (one JSON document per line), starting
# at an offset given on the command line; done() prints one JSON line we parse.
SCRIPT = r"""
local bodies = {}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  i = tonumber(args[2]) or 0
end

function request()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i % #bodies) + 1])
end

function done(summary, latency, requests)
  local q = {}
  for k = 0, @LAST@ do q[#q + 1] = latency:percentile((k + 0.5) / 10) end
  local e = summary.errors
  io.write(string.format(
    '\nCARELINE {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "quantiles_us": [%s]}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(q, ",")))
end
""".replace("@LAST@", str(QUANTILES - 1))


@dataclass(frozen=True)
class WrkRun:
    """One wrk run: answers, wall time, errors by kind, latency quantiles (ms)."""

    ok: int
    seconds: float
    errors: dict[str, int]
    quantiles_ms: list[float]


def available() -> str | None:
    return shutil.which("wrk")


def write_inputs(run_dir: Path, texts: Sequence[str]) -> tuple[Path, Path]:
    """The Lua script and the request bodies, once per benchmark run."""
    script = run_dir / "wrk-post.lua"
    script.write_text(SCRIPT)
    bodies = run_dir / "wrk-bodies.jsonl"
    bodies.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts))
    return script, bodies


async def run(url: str, script: Path, bodies: Path, *, connections: int, seconds: float,
              offset: int, timeout_s: float) -> WrkRun:  # fmt: skip
    """Drive `url` with `connections` closed-loop connections for `seconds`."""
    wrk = available()
    if wrk is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", f"--timeout={timeout_s:g}s",
           "-s", str(script), url, "--", str(bodies), str(offset)]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    return parse_output(out.decode(), err.decode(), proc.returncode)


def parse_output(stdout: str, stderr: str, returncode: int | None) -> WrkRun:
    """The figures from our done() line; a clear error when wrk failed or printed none."""
    lines = [x for x in stdout.splitlines() if x.startswith("CARELINE ")]
    if returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed (exit {returncode}): {stderr.strip() or stdout[-500:]}")
    r = json.loads(lines[-1].removeprefix("CARELINE "))
    errors = {k: r[k] for k in ("connect", "read", "write", "status", "timeout") if r[k]}
    # wrk counts a non-2xx answer among its requests and also as a status error
    ok = r["requests"] - r["status"]
    return WrkRun(ok, r["duration_us"] / 1e6, errors, [q / 1000 for q in r["quantiles_us"]])


def pooled_percentile(runs: Sequence[tuple[list[float], int]], q: float) -> float | None:
    """Nearest-rank percentile over several runs' quantiles, each weighted by its run's
    request count (a run's quantiles stand for equal shares of its requests)."""
    weighted = sorted((v, n / len(qs)) for qs, n in runs if qs and n for v in qs)
    total = sum(w for _, w in weighted)
    if not total:
        return None
    target, seen = q / 100 * total, 0.0
    for v, w in weighted:
        seen += w
        if seen >= target - 1e-9:
            return v
    return weighted[-1][0]


__all__ = ["WrkRun", "available", "parse_output", "pooled_percentile", "run", "write_inputs"]
