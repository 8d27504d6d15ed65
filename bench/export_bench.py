"""Survey export benchmark: rows/s and peak RSS of `careline export surveys` on PostgreSQL,
against PostgreSQL's own `COPY (SELECT …) TO STDOUT WITH CSV` as the peer (the ceiling for
"rows out of the server into a file"), in the same run.

Why: managers export up to a million rows; the export must stream (flat memory, however many
rows) and not be needlessly slower than the database itself can hand the rows out.

    .venv/bin/python bench/export_bench.py                  # 1,000,000 rows (+ a ~100k slice)
    .venv/bin/python bench/export_bench.py --rows 50000     # smoke check

It creates a throwaway schema, fills it with `careline demo-data` (COPY), then exports the
whole range and a ~1/10 date slice, each in its own `careline export surveys` process
(peak RSS from wait4), and runs the COPY peer on the same scopes. Progress on stderr, the
Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import asyncpg

from bot.core.settings import load_settings
from bot.core.store.db import Database
from bot.core.store.scratch import temporary_schema
from surveys.demo import fill
from surveys.reports import Scope, count_rows

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parent.parent
DAYS = 100


@dataclass
class Run:
    what: str
    rows: int
    seconds: float
    peak_rss_mib: float | None

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def careline_export(schema: str, fmt: str, start: date, end: date, out: Path) -> Run:
    """One `careline export surveys` process; its export time (from its own report line,
    so interpreter start-up is excluded) and its peak RSS (wait4, this child only)."""
    env = {**os.environ, "DATABASE_URL": PG_URL, "CARELINE__DATABASE__PG_SCHEMA": schema}
    cmd = [str(ROOT / ".venv/bin/careline"), "export", "surveys", "--from", str(start),
           "--to", str(end), "--format", fmt, "-o", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, _, usage = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read() if proc.stderr else ""
    proc.returncode = 0
    m = re.search(r"wrote ([\d,]+) rows .* in ([\d.]+) s", stderr)
    if not m:
        raise RuntimeError(f"export failed: {stderr[-2000:]}")
    rows, secs = int(m.group(1).replace(",", "")), float(m.group(2))
    return Run(f"careline {fmt}", rows, secs, usage.ru_maxrss / 1024)


async def copy_peer(schema: str, scope: Scope, out: Path) -> Run:
    """PostgreSQL's COPY of the same rows (same WHERE, same order) straight into a file."""
    lo, hi = scope.bounds()
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        started = time.monotonic()
        query = (
            "SELECT * FROM survey_response WHERE resolved_at >= $1 AND resolved_at < $2 "
            "ORDER BY resolved_at, id"
        )
        with out.open("wb") as f:  # the bench's own process: blocking writes are fine here
            status = await conn.copy_from_query(query, lo, hi, output=f, format="csv", header=True)
        secs = time.monotonic() - started
    finally:
        await conn.close()
    return Run("PostgreSQL COPY", int(status.split()[-1]), secs, None)


async def main(args: argparse.Namespace) -> int:
    settings = load_settings(env={**os.environ, "DATABASE_URL": PG_URL})
    tz = settings.surveys.report_timezone
    out_dir = Path(args.out)
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    async with contextlib.AsyncExitStack() as stack:
        schema = args.schema or await stack.enter_async_context(
            temporary_schema(PG_URL, "bench_export")
        )
        db = Database(PG_URL, schema=schema)
        fill_s = None
        try:
            await db.migrate()
            if not args.schema:
                log(f"demo-data: {args.rows:,} conversations into schema {schema} ...")
                started = time.monotonic()
                await fill(db, args.rows, days=DAYS, seed=8)
                fill_s = time.monotonic() - started
                log(f"  {fill_s:.1f} s ({args.rows / fill_s:,.0f} conversations/s)")
            today = Scope.parse({}, tz).end
            full = Scope.parse(
                {"from": str(today - timedelta(days=DAYS + 1)), "to": str(today)}, tz
            )
            part = Scope.parse({"from": str(today - timedelta(days=9)), "to": str(today)}, tz)
            sizes = {"full": await count_rows(db, full), "slice": await count_rows(db, part)}
        finally:
            await db.close()
        runs: list[tuple[str, Run, Run]] = []
        for name, scope in (("slice", part), ("full", full)):
            for fmt in args.formats.split(","):
                if fmt == "xlsx" and name == "full" and not args.xlsx_full:
                    continue
                log(f"export {fmt} {name} ({sizes[name]:,} rows) ...")
                ours = careline_export(schema, fmt, scope.start, scope.end,
                                       out_dir / f"{name}.{fmt}")  # fmt: skip
                peer = await copy_peer(schema, scope, out_dir / f"{name}.copy.csv")
                log(f"  careline {ours.rate:,.0f} rows/s, peak RSS {ours.peak_rss_mib:.0f} MiB; "
                    f"COPY {peer.rate:,.0f} rows/s")  # fmt: skip
                runs.append((f"{fmt}, {name}", ours, peer))
    print(f"\n1-minute load average: {load_before:.2f} at the start, "
          f"{os.getloadavg()[0]:.2f} at the end (2 cores)")  # fmt: skip
    if fill_s is not None:
        print(f"demo-data: {args.rows:,} conversations in {fill_s:.1f} s "
              f"({args.rows / fill_s:,.0f}/s, PostgreSQL COPY)")  # fmt: skip
    else:
        print(f"demo-data: reused schema {args.schema} ({sizes['full']:,} rows)")
    print()
    print("| export | rows | careline rows/s | careline peak RSS | COPY rows/s | careline/COPY |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, ours, peer in runs:
        print(f"| {label} | {ours.rows:,} | {ours.rate:,.0f} | {ours.peak_rss_mib:.0f} MiB "
              f"| {peer.rate:,.0f} | {ours.rate / peer.rate:.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--formats", default="csv,xlsx")
    p.add_argument("--xlsx-full", action="store_true", help="also XLSX for the whole range")
    p.add_argument("--out", default="/tmp/careline-export-bench")
    p.add_argument("--schema", help="reuse a schema already filled by an earlier run (kept)")
    sys.exit(asyncio.run(main(p.parse_args())))
