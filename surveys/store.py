"""The survey table's repository (bot/core/store/models.py: SurveyResponse).

Each method is one short transaction on the gateway's engine. Answers are conditional
UPDATEs on (conversation_id, step, status='asked'): a retried or double-clicked answer
matches no row the second time, so at most one answer per question is ever stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select, update

from bot.core.store.db import Database
from bot.core.store.models import Conversation, Message, SurveyResponse, SurveyStatus, utcnow
from bot.core.store.upsert import insert_ignoring_conflict

FINISHED = (
    SurveyStatus.COMPLETED.value,
    SurveyStatus.SKIPPED.value,
    SurveyStatus.EXPIRED.value,
    SurveyStatus.ABANDONED.value,
)
T = SurveyResponse.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Snapshot:
    """The conversation's facts at resolution, copied next to the answers for reports."""

    conversation_id: str
    customer_id: str
    channel: str
    language: str
    queue: str | None
    severity: str | None
    agent_id: str | None
    bot_only: bool
    reopened: bool
    conversation_created_at: datetime
    escalated_at: datetime | None
    first_human_reply_at: datetime | None
    resolved_at: datetime

    @classmethod
    def of(cls, conv: Conversation, resolved_at: datetime) -> Snapshot:
        return cls(
            conversation_id=conv.id,
            customer_id=conv.customer_id,
            channel=conv.channel,
            language=conv.language,
            queue=conv.queue,
            severity=conv.severity,
            agent_id=conv.agent_id,
            bot_only=bool(conv.bot_only),
            reopened=(conv.reopen_count or 0) > 0,
            conversation_created_at=conv.created_at,
            escalated_at=conv.escalated_at,
            first_human_reply_at=conv.first_human_reply_at,
            resolved_at=resolved_at,
        )


class SurveyStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.sql_engine = db.sql_engine

    async def offer(
        self, snap: Snapshot, *, first_step: str, expires_at: datetime
    ) -> tuple[Any, bool]:
        """Record that the survey is offered: (row, True) if new, (existing row, False)."""
        values = {
            **snap.__dict__,
            "status": SurveyStatus.ASKED.value,
            "step": first_step,
            "asked_at": utcnow(),
            "expires_at": expires_at,
            "demo": False,
        }
        stmt = insert_ignoring_conflict(
            self.db.dialect, SurveyResponse, values, ["conversation_id"]
        )
        async with self.sql_engine.begin() as conn:
            created = (await conn.execute(stmt)).rowcount == 1
        row = await self.get(snap.conversation_id)
        assert row is not None
        return row, created

    async def resnapshot(self, snap: Snapshot) -> None:
        """A reopened conversation was resolved again: its milestones move on, the answers
        (one survey per conversation) stay."""
        fields = {
            k: v for k, v in snap.__dict__.items() if k not in ("conversation_id", "customer_id")
        }
        fields["reopened"] = True
        await self._update(SurveyResponse.conversation_id == snap.conversation_id, fields)

    async def get(self, conversation_id: str) -> Any | None:
        async with self.sql_engine.connect() as conn:
            result = await conn.execute(select(T).where(T.c.conversation_id == conversation_id))
            return result.first()

    async def answer(
        self, conversation_id: str, step: str, value: Any, next_step: str | None
    ) -> bool:
        """Store the answer to `step` if that is still the open question; True if stored."""
        now = utcnow()
        fields: dict[str, Any] = {step: value, "step": next_step,
                                  "answered_at": func.coalesce(T.c.answered_at, now)}  # fmt: skip
        if next_step is None:
            fields.update(status=SurveyStatus.COMPLETED.value, finished_at=now)
        return await self._update(
            and_(
                T.c.conversation_id == conversation_id,
                T.c.step == step,
                T.c.status == SurveyStatus.ASKED.value,
            ),
            fields,
        )

    async def finish(self, conversation_id: str, status: SurveyStatus) -> bool:
        """Close an open survey as skipped, expired or abandoned; True if it was open."""
        return await self._update(
            and_(T.c.conversation_id == conversation_id, T.c.status == SurveyStatus.ASKED.value),
            {"status": status.value, "step": None, "finished_at": utcnow()},
        )

    async def mark_reopened(self, conversation_id: str) -> None:
        await self._update(T.c.conversation_id == conversation_id, {"reopened": True})

    async def note_new_contact(self, customer_id: str, at: datetime, window: timedelta) -> int:
        """The customer started a new conversation: earlier ones resolved within `window`
        were not resolved at first contact (FCR). Returns how many rows this touched."""
        return await self._update(
            and_(
                T.c.customer_id == customer_id,
                T.c.repeat_contact_at.is_(None),
                T.c.resolved_at >= at - window,
                T.c.resolved_at <= at,
            ),
            {"repeat_contact_at": at},
            count=True,
        )

    async def due_to_expire(self, now: datetime, limit: int = 200) -> list[str]:
        query = (
            select(T.c.conversation_id)
            .where(T.c.status == SurveyStatus.ASKED.value, T.c.expires_at <= now)
            .limit(limit)
        )
        async with self.sql_engine.connect() as conn:
            return list((await conn.execute(query)).scalars().all())

    async def idle_bot_conversations(self, cutoff: datetime, limit: int = 200) -> list[str]:
        """Conversations with the bot whose newest message is older than `cutoff`."""
        C, M = Conversation.__table__, Message.__table__  # type: ignore[attr-defined]
        recent = exists().where(M.c.conversation_id == C.c.id, M.c.created_at > cutoff)
        query = (
            select(C.c.id).where(C.c.state == "BOT", C.c.created_at <= cutoff, ~recent).limit(limit)
        )
        async with self.sql_engine.connect() as conn:
            return list((await conn.execute(query)).scalars().all())

    async def _update(self, where: Any, fields: dict[str, Any], *, count: bool = False) -> Any:
        async with self.sql_engine.begin() as conn:
            result = await conn.execute(update(T).where(where).values(**fields))
        return result.rowcount if count else result.rowcount > 0
