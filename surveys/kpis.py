"""The managers' figures, computed in one pass over survey rows (pure: no I/O).

Definitions (docs/SURVEYS.md says the same for managers):
- volume: resolved conversations in scope; every one is offered the survey.
- response rate: conversations with at least one score answered / volume.
- CSAT %: answers of 4 or 5 / all CSAT answers. CES: mean of 1-7 answers (7 = very easy).
- NPS: % promoters (9-10) - % detractors (0-6) of NPS answers.
- FCR: resolved with no reopen and no new conversation from the customer within
  `repeat_contact_days` / volume. Containment: resolved by the bot alone / volume.
- first response: escalated -> first human reply; resolution: created -> resolved.
  Percentiles are nearest-rank: the smallest value with at least p % of values at or below.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any

from bot.core.settings import KpiTargets


def percentile(sorted_values: Any, p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence; None when empty."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, math.ceil(p / 100 * n))
    return float(sorted_values[rank - 1])


def _pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 2) if whole else None


@dataclass
class _Day:
    volume: int = 0
    responses: int = 0
    csat_n: int = 0
    csat_good: int = 0
    ces_n: int = 0
    ces_sum: int = 0


@dataclass
class KpiAccumulator:
    """Feed rows with `add()`, read the report with `result()`."""

    tz: tzinfo
    volume: int = 0
    responded: int = 0
    bot_only: int = 0
    fcr: int = 0
    ces: Counter[int] = field(default_factory=Counter)
    csat: Counter[int] = field(default_factory=Counter)
    nps: Counter[int] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    first_response_s: array = field(default_factory=lambda: array("d"))
    resolution_s: array = field(default_factory=lambda: array("d"))
    days: dict[date, _Day] = field(default_factory=dict)

    def add(self, r: Any) -> None:
        self.volume += 1
        self.statuses[r.status] += 1
        answered = r.ces is not None or r.csat is not None or r.nps is not None
        self.responded += answered
        self.bot_only += bool(r.bot_only)
        self.fcr += (not r.reopened) and r.repeat_contact_at is None
        if r.ces is not None:
            self.ces[r.ces] += 1
        if r.csat is not None:
            self.csat[r.csat] += 1
        if r.nps is not None:
            self.nps[r.nps] += 1
        if r.escalated_at is not None and r.first_human_reply_at is not None:
            self.first_response_s.append(_seconds(r.escalated_at, r.first_human_reply_at))
        self.resolution_s.append(_seconds(r.conversation_created_at, r.resolved_at))
        day = self.days.setdefault(_aware(r.resolved_at).astimezone(self.tz).date(), _Day())
        day.volume += 1
        day.responses += answered
        if r.csat is not None:
            day.csat_n += 1
            day.csat_good += r.csat >= 4
        if r.ces is not None:
            day.ces_n += 1
            day.ces_sum += r.ces

    def result(self, targets: KpiTargets, *, nps_enabled: bool) -> dict[str, Any]:
        csat_n = sum(self.csat.values())
        ces_n = sum(self.ces.values())
        nps_n = sum(self.nps.values())
        promoters = sum(c for v, c in self.nps.items() if v >= 9)
        detractors = sum(c for v, c in self.nps.items() if v <= 6)
        first = sorted(self.first_response_s)
        resolution = sorted(self.resolution_s)
        kpis: dict[str, Any] = {
            "volume": self.volume,
            "responses": self.responded,
            "response_rate_pct": _pct(self.responded, self.volume),
            "csat_pct": _pct(sum(c for v, c in self.csat.items() if v >= 4), csat_n),
            "csat_responses": csat_n,
            "ces_mean": round(sum(v * c for v, c in self.ces.items()) / ces_n, 3)
            if ces_n
            else None,
            "ces_responses": ces_n,
            "fcr_pct": _pct(self.fcr, self.volume),
            "containment_pct": _pct(self.bot_only, self.volume),
            "first_response_s": {
                "p50": percentile(first, 50),
                "p90": percentile(first, 90),
                "n": len(first),
            },
            "resolution_s": {
                "p50": percentile(resolution, 50),
                "p90": percentile(resolution, 90),
                "n": len(resolution),
            },
        }
        if nps_enabled or nps_n:
            kpis["nps"] = round(100 * (promoters - detractors) / nps_n, 2) if nps_n else None
            kpis["nps_responses"] = nps_n
        return {
            "kpis": kpis,
            "distributions": {
                "ces": {str(v): self.ces.get(v, 0) for v in range(1, 8)},
                "csat": {str(v): self.csat.get(v, 0) for v in range(1, 6)},
                **(
                    {"nps": {str(v): self.nps.get(v, 0) for v in range(0, 11)}}
                    if "nps" in kpis
                    else {}
                ),
                "status": dict(sorted(self.statuses.items())),
            },
            "trend": [
                {
                    "date": d.isoformat(),
                    "volume": x.volume,
                    "responses": x.responses,
                    "csat_pct": _pct(x.csat_good, x.csat_n),
                    "ces_mean": round(x.ces_sum / x.ces_n, 3) if x.ces_n else None,
                }
                for d, x in sorted(self.days.items())
            ],
            "targets": attainment(kpis, targets),
        }


def attainment(kpis: dict[str, Any], targets: KpiTargets) -> list[dict[str, Any]]:
    """Each configured target next to the measured value: met when value >= target."""
    out = []
    for name, target in targets.model_dump().items():
        if target is None or name not in kpis:
            continue
        value = kpis[name]
        out.append(
            {
                "kpi": name,
                "target": target,
                "value": value,
                "met": None if value is None else value >= target,
                "attainment_pct": None
                if value is None or not target
                else round(100 * value / target, 1),
            }
        )
    return out


def _aware(t: datetime) -> datetime:
    from datetime import UTC

    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _seconds(a: datetime, b: datetime) -> float:
    return (_aware(b) - _aware(a)).total_seconds()
