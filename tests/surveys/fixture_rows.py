"""A small hand-checked set of resolved conversations (the expected KPIs in
test_reports.py were worked out by hand from this table, not by running the code)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from surveys.demo import insert_rows


def _t(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


# (id, channel, lang, queue, severity, agent, bot_only, reopened, repeat, status,
#  ces, csat, nps, comment, created, escalate_after_s, first_reply_after_escalation_s,
#  resolution_s); created + resolution_s = resolved_at (UTC). Report zone: UTC+7.
ROWS: list[tuple[Any, ...]] = [
    ("c1", "widget", "vi", None, "low", None, True, False, False, "completed",
     7, 5, 10, "+cmd|' /C calc'!A0", _t(10, 3), None, None, 120),
    ("c2", "widget", "vi", "technical", "high", "a1", False, True, False, "completed",
     5, 4, 7, "-2+3", _t(10, 4), 60, 300, 1200),
    ("c3", "telegram", "en", "billing", "normal", "a2", False, False, True, "completed",
     2, 1, 3, "=1+1", _t(10, 5), 30, 70, 3600),
    ("c4", "telegram", "vi", None, "low", None, True, False, False, "expired",
     None, None, None, "\rCR", _t(10, 6), None, None, 60),
    ("c5", "widget", "en", "technical", "normal", "a1", False, False, False, "skipped",
     6, None, None, "@SUM(A1)", _t(10, 7), 10, 590, 1800),
    # 2026-03-10 18:30 UTC is 2026-03-11 01:30 in Ho Chi Minh City: the next report day.
    ("c6", "widget", "vi", None, "low", None, True, False, False, "completed",
     4, 3, None, "\tTư vấn tốt, cảm ơn", _t(10, 18, 25), None, None, 300),
    # Outside 2026-03-10..2026-03-12 (local): 2026-03-13 00:30 and 2026-03-09 23:59 local.
    ("c7", "widget", "vi", None, "low", None, True, False, False, "completed",
     1, 1, None, "ngoài phạm vi", _t(12, 17, 25), None, None, 300),
    ("c8", "widget", "vi", None, "low", None, True, False, False, "completed",
     1, 1, None, None, _t(9, 16, 58), None, None, 60),
]  # fmt: skip
IN_SCOPE = ["c1", "c2", "c3", "c4", "c5", "c6"]


def survey_dicts() -> list[dict[str, Any]]:
    out = []
    for (cid, channel, lang, queue, severity, agent, bot_only, reopened, repeat, status,
         ces, csat, nps, comment, created, esc_s, reply_s, res_s) in ROWS:  # fmt: skip
        escalated = created + timedelta(seconds=esc_s) if esc_s is not None else None
        first = escalated + timedelta(seconds=reply_s) if escalated and reply_s else None
        resolved = created + timedelta(seconds=res_s)
        out.append({
            "conversation_id": cid, "customer_id": f"cust-{cid}", "channel": channel,
            "language": lang, "queue": queue, "severity": severity, "agent_id": agent,
            "bot_only": bot_only, "reopened": reopened, "demo": False, "status": status,
            "step": None, "ces": ces, "csat": csat, "nps": nps, "comment": comment,
            "conversation_created_at": created, "escalated_at": escalated,
            "first_human_reply_at": first, "resolved_at": resolved,
            "repeat_contact_at": resolved + timedelta(days=2) if repeat else None,
            "asked_at": resolved, "expires_at": resolved + timedelta(hours=24),
            "answered_at": resolved + timedelta(seconds=30) if ces or csat else None,
            "finished_at": resolved + timedelta(seconds=60),
        })  # fmt: skip
    return out


async def load_fixture(db: Any) -> list[dict[str, Any]]:
    surveys = survey_dicts()
    customers = [
        {"id": s["customer_id"], "channel": s["channel"], "external_id": s["customer_id"],
         "display_name": None, "language": s["language"], "unreachable": False,
         "created_at": s["conversation_created_at"], "last_seen_at": s["resolved_at"]}
        for s in surveys
    ]  # fmt: skip
    conversations = [
        {"id": s["conversation_id"], "customer_id": s["customer_id"], "channel": s["channel"],
         "language": s["language"], "state": "CLOSED", "created_at": s["conversation_created_at"],
         "updated_at": s["resolved_at"], "escalated_at": s["escalated_at"],
         "first_human_reply_at": s["first_human_reply_at"], "resolved_at": s["resolved_at"],
         "closed_at": s["resolved_at"], "reopen_count": int(s["reopened"]), "queue": s["queue"],
         "severity": s["severity"], "agent_id": s["agent_id"], "bot_only": s["bot_only"]}
        for s in surveys
    ]  # fmt: skip
    await insert_rows(db, "customer", customers)
    await insert_rows(db, "conversation", conversations)
    await insert_rows(db, "survey_response", surveys)
    return surveys
