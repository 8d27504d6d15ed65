"""The survey subcommands of `careline` (bot/cli.py only parses arguments and calls these):
`careline export surveys …` and `careline demo-data …`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from bot.core.settings import Settings
from bot.core.store.db import Database


class ProgressBar:
    """A one-line progress bar on stderr (redrawn at most ~10 times a second)."""

    def __init__(self, label: str, total: int | None, out: TextIO = sys.stderr) -> None:
        self.label, self.total, self.out = label, total, out
        self.started = time.monotonic()
        self._drawn = 0.0
        self.done = 0

    def __call__(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.out.isatty() and (now - self._drawn >= 0.1 or done == self.total):
            self._drawn = now
            self.out.write("\r" + self._line(now))
            self.out.flush()

    def _line(self, now: float) -> str:
        done = self.done
        rate = done / max(now - self.started, 1e-9)
        if not self.total:
            return f"{self.label} {done:,} rows {rate:,.0f} rows/s"
        frac = min(1.0, done / self.total)
        bar = "#" * int(30 * frac)
        return f"{self.label} [{bar:<30}] {done:,}/{self.total:,} {frac:4.0%} {rate:,.0f} rows/s"

    def finish(self) -> None:
        """End the bar's line (a log file gets just this final state)."""
        if self.out.isatty():
            self.out.write("\n")
        else:
            self.out.write(self._line(time.monotonic()) + "\n")
        self.out.flush()


async def export_surveys(settings: Settings, args: argparse.Namespace) -> int:
    from surveys.export import export
    from surveys.reports import Scope, ScopeError, count_rows

    raw: dict[str, Any] = {"from": args.date_from, "to": args.date_to}
    raw.update({k: getattr(args, k) for k in ("channel", "queue", "agent", "severity", "language")})
    try:
        scope = Scope.parse(raw, settings.surveys.report_timezone)
    except ScopeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out: Path = args.output
    db = Database.from_settings(settings)
    try:
        await db.migrate()
        total = await count_rows(db, scope)
        bar = ProgressBar(f"export {args.format}", total)
        started = time.monotonic()
        rows = await export(db, scope, args.format, out, bar)
        bar(rows)
        bar.finish()
    finally:
        await db.close()
    took = time.monotonic() - started
    print(f"wrote {rows:,} rows to {out} in {took:.1f} s ({scope.start} to {scope.end})",
          file=sys.stderr)  # fmt: skip
    return 0


async def demo_data(settings: Settings, args: argparse.Namespace) -> int:
    from surveys.demo import fill, has_real_data

    db = Database.from_settings(settings)
    try:
        await db.migrate()
        if await has_real_data(db) and not args.force:
            print(f"error: {db!r} holds real survey answers; demo data would mix into "
                  "the managers' reports. Use another database, or --force.",
                  file=sys.stderr)  # fmt: skip
            return 1
        bar = ProgressBar("demo-data", args.conversations)
        started = time.monotonic()
        n = await fill(db, args.conversations, days=args.days, seed=args.seed, progress=bar)
        bar.finish()
    finally:
        await db.close()
    took = time.monotonic() - started
    print(f"inserted {n:,} demo conversations with survey rows into {db!r} in {took:.1f} s "
          f"({n / max(took, 1e-9):,.0f}/s)", file=sys.stderr)  # fmt: skip
    return 0
