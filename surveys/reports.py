"""Report scope (date range + filters) and the queries over the survey table that feed
the KPIs and the exports. One table, one streamed pass: memory stays flat however many
rows the range holds (durations for percentiles are kept as packed floats)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from bot.core.settings import Settings
from bot.core.store.db import Database
from bot.core.store.models import SurveyResponse
from surveys.kpis import KpiAccumulator
from surveys.metrics import REPORT_SECONDS

T = SurveyResponse.__table__  # type: ignore[attr-defined]
FILTERS = ("channel", "queue", "agent", "severity", "language")
_COLUMN = {"agent": "agent_id"}
MAX_FILTER_CHARS = 100
MAX_RANGE_DAYS = 3660


class ScopeError(ValueError):
    """A bad date or filter, worded for the person who typed it."""


@dataclass(frozen=True)
class Scope:
    """Which resolved conversations a report or export covers: [start, end] dates inclusive,
    in the report time zone, plus exact-match filters."""

    start: date
    end: date
    tz: str = "Asia/Ho_Chi_Minh"
    channel: str | None = None
    queue: str | None = None
    agent: str | None = None
    severity: str | None = None
    language: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, str | None], tz: str, *, today: date | None = None) -> Scope:
        """From query parameters or CLI options: `from`, `to` (YYYY-MM-DD) and the filters.
        Without dates: the last 30 days."""
        today = today or datetime.now(ZoneInfo(tz)).date()
        end = _date(raw.get("to"), "to") or today
        start = _date(raw.get("from"), "from") or end - timedelta(days=29)
        if start > end:
            raise ScopeError(f"'from' ({start}) is after 'to' ({end})")
        if (end - start).days > MAX_RANGE_DAYS:
            raise ScopeError(f"the date range is limited to {MAX_RANGE_DAYS} days")
        chosen: dict[str, str] = {}
        for name in FILTERS:
            value = (raw.get(name) or "").strip()
            if len(value) > MAX_FILTER_CHARS:
                raise ScopeError(f"filter '{name}' is longer than {MAX_FILTER_CHARS} characters")
            if value:
                chosen[name] = value
        scope = cls(start, end, tz, **chosen)
        try:  # checked here, before any response starts: an export must not fail midway
            lo, hi = scope.bounds()
            lo.astimezone(UTC), hi.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ScopeError(f"the dates {start} to {end} are out of range") from None
        return scope

    def bounds(self) -> tuple[datetime, datetime]:
        zone = ZoneInfo(self.tz)
        lo = datetime.combine(self.start, dtime.min, zone)
        hi = datetime.combine(self.end + timedelta(days=1), dtime.min, zone)
        return lo, hi

    def where(self) -> list[Any]:
        lo, hi = self.bounds()
        clauses = [T.c.resolved_at >= lo, T.c.resolved_at < hi]
        for name in FILTERS:
            value = getattr(self, name)
            if value is not None:
                clauses.append(T.c[_COLUMN.get(name, name)] == value)
        return clauses

    def as_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["start"], d["end"] = self.start.isoformat(), self.end.isoformat()
        return {k: v for k, v in d.items() if v is not None}


def _date(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ScopeError(f"'{name}' must be a date like 2026-11-22 (got {value[:40]!r})") from None


async def stream_rows(
    db: Database, scope: Scope, *, columns: Sequence[str] | None = None, batch: int = 5000
) -> AsyncIterator[list[Any]]:
    """The scope's rows (all columns, or tuples of `columns`) in resolution order, `batch`
    at a time, from a server-side cursor on PostgreSQL: never the whole result in memory."""
    chosen = [T.c[c] for c in columns] if columns else [T]
    query = select(*chosen).where(*scope.where()).order_by(T.c.resolved_at, T.c.id)
    async with db.sql_engine.connect() as conn:
        if columns and db.dialect == "postgresql":
            async for part in _raw_cursor(conn, query, batch):
                yield part
            return
        result = await conn.stream(query.execution_options(yield_per=batch))
        async for part in result.partitions(batch):
            yield part


async def _raw_cursor(conn: Any, query: Any, batch: int) -> AsyncIterator[list[Any]]:
    """asyncpg's own cursor for plain tuples: SQLAlchemy's per-cell result processing
    was a third of an export's time, and asyncpg already returns aware UTC timestamps."""
    compiled = query.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    args = [params[name] for name in compiled.positiontup]
    raw = await conn.get_raw_connection()
    apg = raw.driver_connection
    async with apg.transaction(readonly=True):
        cursor = await apg.cursor(compiled.string, *args)
        while part := await cursor.fetch(batch):
            yield part


async def count_rows(db: Database, scope: Scope) -> int:
    async with db.sql_engine.connect() as conn:
        return int(
            (
                await conn.execute(select(func.count()).select_from(T).where(*scope.where()))
            ).scalar_one()
        )


async def survey_report(db: Database, settings: Settings, scope: Scope) -> dict[str, Any]:
    """The dashboard's JSON: KPIs, distributions, daily trend and target attainment."""
    started = time.monotonic()
    acc = KpiAccumulator(tz=ZoneInfo(scope.tz))
    async for part in stream_rows(db, scope):
        for row in part:
            acc.add(row)
    report = acc.result(settings.kpi_targets, nps_enabled=settings.surveys.nps_enabled)
    report["scope"] = scope.as_dict()
    REPORT_SECONDS.observe(time.monotonic() - started)
    return report


async def filter_options(db: Database) -> dict[str, list[str]]:
    """Values present in the data, for the dashboard's filter lists (bounded)."""
    out: dict[str, list[str]] = {}
    async with db.sql_engine.connect() as conn:
        for name in FILTERS:
            col = T.c[_COLUMN.get(name, name)]
            query = select(col).where(col.is_not(None)).distinct().order_by(col).limit(200)
            out[name] = [str(v) for v in (await conn.execute(query)).scalars().all()]
    return out
