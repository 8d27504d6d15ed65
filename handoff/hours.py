"""Opening hours: is a person expected to answer now?"""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from bot.core.settings import OpeningHours

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def is_open(hours: OpeningHours, at: datetime | None = None) -> bool:
    local = (at or datetime.now(UTC)).astimezone(ZoneInfo(hours.timezone))
    if DAYS[local.weekday()] not in hours.days:
        return False
    start, end = _hm(hours.start), _hm(hours.end)
    now = local.time()
    if start <= end:
        return start <= now < end
    return now >= start or now < end  # a shift across midnight, e.g. 20:00-02:00


def describe(hours: OpeningHours) -> str:
    return f"{hours.start}–{hours.end}"


def _hm(value: str) -> time:
    h, m = (int(x) for x in value.split(":"))
    return time(23, 59, 59, 999999) if h == 24 else time(h, m)
