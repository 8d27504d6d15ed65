"""`careline demo-data`: realistic synthetic conversations and survey answers, so the
dashboard can be seen and the exports benchmarked.

Everything it writes is marked: customers are `demo-…` with the display name "Demo
customer", survey rows have demo = true. Rows go in with COPY on PostgreSQL and
multi-row INSERTs on SQLite, in batches (a million conversations take well under a minute
per 100k on the development machine; see docs/BENCHMARKS.md), never one ORM object at a time.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select

from bot.core.store.db import Database
from bot.core.store.models import Conversation, Customer, SurveyResponse, utcnow
from bot.core.vocabulary import SEVERITIES as SEVERITIES_MOST_FIRST

BATCH = 10_000
QUEUES = ("technical", "billing", "orders", "general", "safety")
QUEUE_WEIGHTS = (40, 20, 25, 13, 2)
SEVERITIES = tuple(reversed(SEVERITIES_MOST_FIRST))
AGENTS = tuple(f"demo-agent-{i:02d}" for i in range(1, 13))
COMMENTS = (
    "Nhân viên tư vấn nhiệt tình, cảm ơn shop!",
    "Trả lời nhanh, dễ hiểu.",
    "Chờ hơi lâu mới có người trả lời.",
    "Bot không hiểu câu hỏi của mình.",
    "Great help, thanks!",
    "Took too long to reach a person.",
    "Hướng dẫn bảo hành rõ ràng.",
    "=SUM(A1:A9) rất hài lòng",  # a hostile-looking comment: exports must neutralize it
)
TABLES = ("customer", "conversation", "survey_response")
Progress = Callable[[int], None]


@dataclass(frozen=True)
class DemoBatch:
    customers: list[dict[str, Any]]
    conversations: list[dict[str, Any]]
    surveys: list[dict[str, Any]]


def generate(
    n: int, *, days: int = 90, seed: int | None = None, now: datetime | None = None
) -> Iterator[DemoBatch]:
    """`n` resolved conversations over the last `days` days, in batches of BATCH."""
    rng = random.Random(seed)
    now = now or utcnow()
    span = days * 86400
    made = 0
    customer_ids: list[str] = []
    while made < n:
        size = min(BATCH, n - made)
        batch = DemoBatch([], [], [])
        for _ in range(size):
            _one(rng, now, span, batch, customer_ids)
        made += size
        yield batch


def _one(rng: random.Random, now: datetime, span: int, out: DemoBatch, known: list[str]) -> None:
    if known and rng.random() < 0.25:  # a returning customer
        customer_id = known[rng.randrange(len(known))]
        channel = "widget" if customer_id[0] < "8" else "telegram"
    else:
        customer_id = uuid.UUID(int=rng.getrandbits(128)).hex
        channel = "widget" if customer_id[0] < "8" else "telegram"
        created = now - timedelta(seconds=span + 3600)
        out.customers.append({
            "id": customer_id, "channel": channel, "external_id": f"demo-{customer_id[:16]}",
            "display_name": "Demo customer", "language": None, "unreachable": False,
            "created_at": created, "last_seen_at": created,
        })  # fmt: skip
        if len(known) < 200_000:
            known.append(customer_id)
    lang = "vi" if rng.random() < 0.85 else "en"
    created = now - timedelta(seconds=rng.randrange(span))
    human = rng.random() < 0.45
    queue = rng.choices(QUEUES, QUEUE_WEIGHTS)[0] if human else None
    severity = "critical" if queue == "safety" else rng.choices(SEVERITIES[:3], (30, 55, 15))[0]
    escalated = created + timedelta(seconds=rng.randrange(20, 600)) if human else None
    wait = rng.lognormvariate(5.0, 0.9) if human else 0  # ~150 s median, long tail
    first_reply = escalated + timedelta(seconds=wait) if escalated else None
    handle = rng.lognormvariate(6.3, 0.7) if human else rng.lognormvariate(4.5, 0.8)
    resolved = (first_reply or created) + timedelta(seconds=handle)
    resolved = min(resolved, now - timedelta(seconds=1))
    agent = rng.choice(AGENTS) if human else None
    reopened = rng.random() < 0.08
    repeat = resolved + timedelta(hours=rng.randrange(1, 160)) if rng.random() < 0.1 else None
    if repeat is not None and repeat > now:
        repeat = None
    cid = uuid.UUID(int=rng.getrandbits(128)).hex
    out.conversations.append({
        "id": cid, "customer_id": customer_id, "channel": channel, "language": lang,
        "state": "CLOSED", "created_at": created, "updated_at": resolved,
        "escalated_at": escalated, "first_human_reply_at": first_reply, "resolved_at": resolved,
        "closed_at": resolved, "reopen_count": int(reopened), "queue": queue,
        "severity": severity if human else "low", "agent_id": agent, "bot_only": not human,
    })  # fmt: skip
    # Harder journeys feel harder: long waits and reopens pull the scores down.
    mood = rng.gauss(0.75, 0.2) - (0.15 if reopened else 0) - min(wait, 1800) / 6000
    answered = rng.random() < 0.42
    ces = csat = None
    comment = None
    status = "expired"
    if answered:
        ces = max(1, min(7, round(1 + 6 * mood + rng.gauss(0, 0.6))))
        csat = max(1, min(5, round(1 + 4 * mood + rng.gauss(0, 0.5))))
        status = "completed"
        if rng.random() < 0.2:
            comment = rng.choice(COMMENTS)
    elif rng.random() < 0.3:
        status = "skipped"
    out.surveys.append({
        "conversation_id": cid, "customer_id": customer_id, "channel": channel, "language": lang,
        "queue": queue, "severity": severity if human else "low", "agent_id": agent,
        "bot_only": not human, "reopened": reopened, "demo": True, "status": status,
        "step": None, "ces": ces, "csat": csat, "nps": None, "comment": comment,
        "conversation_created_at": created, "escalated_at": escalated,
        "first_human_reply_at": first_reply, "resolved_at": resolved,
        "repeat_contact_at": repeat, "asked_at": resolved,
        "expires_at": resolved + timedelta(hours=24),
        "answered_at": resolved + timedelta(seconds=40) if answered else None,
        "finished_at": resolved + timedelta(seconds=60 if answered else 86400),
    })  # fmt: skip


async def has_real_data(db: Database) -> bool:
    """True when the database holds survey rows that are not demo rows."""
    t = SurveyResponse.__table__  # type: ignore[attr-defined]
    async with db.sql_engine.connect() as conn:
        query = select(func.count()).select_from(t).where(t.c.demo.is_(False))
        return bool((await conn.execute(query)).scalar_one())


async def insert_rows(db: Database, table: str, rows: list[dict[str, Any]]) -> None:
    """Bulk insert: COPY on PostgreSQL, one multi-row executemany on SQLite."""
    if not rows:
        return
    model = {"customer": Customer, "conversation": Conversation,
             "survey_response": SurveyResponse}[table]  # fmt: skip
    t = model.__table__  # type: ignore[attr-defined]
    columns = [c.name for c in t.columns if c.name in rows[0]]
    async with db.sql_engine.begin() as conn:
        if db.dialect == "postgresql":
            raw = await conn.get_raw_connection()
            await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                table,
                records=[tuple(r[c] for c in columns) for r in rows],
                columns=columns,
                schema_name=db.schema,
            )
        else:
            await conn.execute(insert(t), rows)


async def fill(db: Database, n: int, *, days: int = 90, seed: int | None = None,
               progress: Progress | None = None) -> int:  # fmt: skip
    """Insert `n` demo conversations with their survey rows; returns n. Batches are
    generated on a thread (CPU work) while the previous one is being written."""
    done = 0
    batches = generate(n, days=days, seed=seed)
    upcoming = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
    while (batch := await upcoming) is not None:
        upcoming = asyncio.ensure_future(asyncio.to_thread(next, batches, None))  # overlaps
        await insert_rows(db, "customer", batch.customers)
        await insert_rows(db, "conversation", batch.conversations)
        await insert_rows(db, "survey_response", batch.surveys)
        done += len(batch.conversations)
        if progress:
            progress(done)
    return done
