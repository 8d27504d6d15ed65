"""Survey exports: one row per resolved conversation, survey answers next to the
conversation's metrics, as CSV or XLSX.

- CSV is produced batch by batch from a streamed query (constant memory), UTF-8 with a BOM
  so Excel shows Vietnamese correctly.
- XLSX uses openpyxl's write-only mode (rows go to a temporary file, not a tree in memory).
- Text cells that a spreadsheet would run as a formula (starting with = + - @, tab or CR)
  are prefixed with an apostrophe (OWASP's advice): customers write the comments.
- File writes and openpyxl calls run in a thread; the event loop never blocks on them.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.core.store.db import Database
from surveys.metrics import EXPORT_ROWS
from surveys.reports import Scope, stream_rows

BOM = "\ufeff"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST = frozenset(FORMULA_START)
COLUMNS = (
    "conversation_id", "channel", "language", "queue", "severity", "agent_id", "handled_by",
    "reopened", "repeat_contact", "first_contact_resolution", "survey_status", "ces", "csat",
    "nps", "comment", "created_at", "escalated_at", "first_human_reply_at", "resolved_at",
    "first_response_s", "resolution_s", "answered_at", "demo",
)  # fmt: skip
FORMATS = ("csv", "xlsx")
Progress = Callable[[int], None]


def neutralize(value: str) -> str:
    """A text cell that cannot be executed as a spreadsheet formula."""
    return "'" + value if value[:1] in _FORMULA_FIRST else value


# The export's columns from the survey table, in this order (rows are unpacked as tuples:
# attribute access per cell was a third of the export's time).
SOURCE = (
    "conversation_id", "channel", "language", "queue", "severity", "agent_id", "bot_only",
    "reopened", "repeat_contact_at", "status", "ces", "csat", "nps", "comment",
    "conversation_created_at", "escalated_at", "first_human_reply_at", "resolved_at",
    "answered_at", "demo",
)  # fmt: skip


def export_row(r: Any) -> list[Any]:
    """The typed values of one export row (None = empty cell), text cells neutralized."""
    (cid, channel, language, queue, severity, agent, bot_only, reopened, repeat_at, status,
     ces, csat, nps, comment, created, escalated, first_reply, resolved, answered,
     demo) = r  # fmt: skip
    repeat = repeat_at is not None
    first = (
        round((first_reply - escalated).total_seconds(), 3)
        if escalated is not None and first_reply is not None
        else None
    )
    return [
        neutralize(cid), neutralize(channel), neutralize(language),
        queue and neutralize(queue), severity and neutralize(severity),
        agent and neutralize(agent), "bot" if bot_only else "human", bool(reopened), repeat,
        not reopened and not repeat, status, ces, csat, nps, comment and neutralize(comment),
        _utc(created), _utc(escalated), _utc(first_reply), _utc(resolved),
        first, round((resolved - created).total_seconds(), 3), _utc(answered), bool(demo),
    ]  # fmt: skip


def _utc(t: datetime | None) -> datetime | None:
    if t is None or t.tzinfo is UTC:
        return t
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def _iso(t: datetime | None) -> str:
    return "" if t is None else _utc(t).isoformat()  # type: ignore[union-attr]


def _n(v: Any) -> Any:
    return "" if v is None else v


def _flag(v: Any) -> str:
    return "true" if v else "false"


def csv_row(r: Any) -> tuple[Any, ...]:
    """export_row's values as CSV cells, in one pass: the export's hot loop (a generic
    per-cell conversion cost more than the database read)."""
    (cid, channel, language, queue, severity, agent, bot_only, reopened, repeat_at, status,
     ces, csat, nps, comment, created, escalated, first_reply, resolved, answered,
     demo) = r  # fmt: skip
    repeat = repeat_at is not None
    first = (
        round((first_reply - escalated).total_seconds(), 3)
        if escalated is not None and first_reply is not None
        else ""
    )
    return (
        neutralize(cid), neutralize(channel), neutralize(language),
        "" if queue is None else neutralize(queue),
        "" if severity is None else neutralize(severity),
        "" if agent is None else neutralize(agent), "bot" if bot_only else "human",
        _flag(reopened), _flag(repeat), _flag(not reopened and not repeat), status,
        _n(ces), _n(csat), _n(nps), "" if comment is None else neutralize(comment),
        _iso(created), _iso(escalated), _iso(first_reply), _iso(resolved), first,
        round((resolved - created).total_seconds(), 3), _iso(answered), _flag(demo),
    )  # fmt: skip


async def csv_chunks(
    db: Database, scope: Scope, progress: Progress | None = None
) -> AsyncIterator[bytes]:
    """The export as UTF-8 CSV byte chunks (BOM and header first), one per row batch."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    buf.write(BOM)
    writer.writerow(COLUMNS)
    yield buf.getvalue().encode("utf-8")
    done = 0
    async for part in stream_rows(db, scope, columns=SOURCE):
        buf.seek(0)
        buf.truncate()
        writer.writerows(map(csv_row, part))
        yield buf.getvalue().encode("utf-8")
        done += len(part)
        EXPORT_ROWS.labels("csv").inc(len(part))
        if progress:
            progress(done)


async def write_csv(
    db: Database, scope: Scope, path: Path, progress: Progress | None = None
) -> int:
    done = [0]

    def seen(n: int) -> None:
        done[0] = n
        if progress:
            progress(n)

    f = await asyncio.to_thread(open, path, "wb")
    try:
        async for chunk in csv_chunks(db, scope, seen):
            await asyncio.to_thread(f.write, chunk)
    finally:
        await asyncio.to_thread(f.close)
    return done[0]


async def write_xlsx(
    db: Database, scope: Scope, path: Path, progress: Progress | None = None
) -> int:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("surveys")
    await asyncio.to_thread(ws.append, list(COLUMNS))
    done = 0
    async for part in stream_rows(db, scope, columns=SOURCE):
        rows = [[_xlsx_cell(v) for v in export_row(r)] for r in part]
        await asyncio.to_thread(_append_all, ws, rows)
        done += len(part)
        EXPORT_ROWS.labels("xlsx").inc(len(part))
        if progress:
            progress(done)
    await asyncio.to_thread(wb.save, path)
    return done


def _append_all(ws: Any, rows: list[list[Any]]) -> None:
    for row in rows:
        ws.append(row)


def _xlsx_cell(v: Any) -> Any:
    # Excel has no time zones: timestamps are written as UTC wall time (the header says so
    # in docs/SURVEYS.md); openpyxl refuses aware datetimes.
    return v.replace(tzinfo=None) if isinstance(v, datetime) else v


async def export(
    db: Database, scope: Scope, fmt: str, path: Path, progress: Progress | None = None
) -> int:
    """Write the scope to `path` as `fmt`; returns the number of data rows."""
    if fmt == "csv":
        return await write_csv(db, scope, path, progress)
    if fmt == "xlsx":
        return await write_xlsx(db, scope, path, progress)
    raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
