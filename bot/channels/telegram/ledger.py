"""SQL side of Telegram delivery: what is still to send, and what was sent.

Kept next to the channel rather than in bot/core/store/db.py because only the Telegram sender asks
these questions. It uses the gateway's async engine (same pool, same PostgreSQL schema).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from bot.core.store.models import Conversation, Customer, Message, TelegramDelivery, utcnow
from bot.core.store.upsert import upsert

CHANNEL = "telegram"
OUTBOUND_SENDERS = ("bot", "agent", "system")  # never "customer", never an internal "note"
SENDING, DELIVERED, FAILED = "sending", "delivered", "failed"


class DeliveryLedger:
    def __init__(self, sql_engine: AsyncEngine) -> None:
        self.sql_engine = sql_engine
        self.dialect = sql_engine.dialect.name
        self._sql_sessions = async_sessionmaker(sql_engine, expire_on_commit=False)

    async def undelivered(
        self, conversation_id: str, *, limit: int = 50
    ) -> list[tuple[Message, int]]:
        """The conversation's outbound messages not yet (fully) delivered, oldest first, each
        with the number of its parts already sent."""
        d = TelegramDelivery
        query = (
            select(Message, d.parts_sent)
            .outerjoin(d, d.message_id == Message.id)  # type: ignore[arg-type]
            .where(
                Message.conversation_id == conversation_id,
                Message.sender.in_(OUTBOUND_SENDERS),  # type: ignore[attr-defined]
                or_(d.message_id.is_(None), d.status == SENDING),  # type: ignore[union-attr]
            )
            .order_by(Message.id)
            .limit(limit)
        )
        async with self._sql_sessions() as s:
            rows = (await s.execute(query)).all()
        return [(m, int(parts or 0)) for m, parts in rows]

    async def recipient(self, conversation_id: str) -> Customer | None:
        """The Telegram customer of a conversation (one query), or None if it is not one."""
        query = (
            select(Customer)
            .join(Conversation, Conversation.customer_id == Customer.id)  # type: ignore[arg-type]
            .where(Conversation.id == conversation_id, Conversation.channel == CHANNEL)
        )
        async with self._sql_sessions() as s:
            return (await s.scalars(query)).first()

    async def record(
        self,
        message: Message,
        parts_sent: int,
        status: str,
        error: str | None = None,
    ) -> None:
        """Durably note progress on one message (upsert by message id)."""
        values: dict[str, Any] = {
            "message_id": message.id,
            "conversation_id": message.conversation_id,
            "parts_sent": parts_sent,
            "status": status,
            "error": error,
            "updated_at": utcnow(),
        }
        query = upsert(self.dialect, TelegramDelivery, values, ["message_id"])
        async with self._sql_sessions.begin() as s:
            await s.execute(query)

    async def lagging_conversations(
        self, *, settled_s: float, closed_within_h: float = 48, limit: int = 500
    ) -> list[str]:
        """Telegram conversations with an outbound message at least `settled_s` old that was
        never delivered: their wake-up was lost (e.g. Redis restarted without persistence).
        Customers marked unreachable are left out; conversations closed long ago too."""
        now = utcnow()
        d = TelegramDelivery
        query = (
            select(Message.conversation_id)
            .join(Conversation, Conversation.id == Message.conversation_id)  # type: ignore[arg-type]
            .join(Customer, Customer.id == Conversation.customer_id)  # type: ignore[arg-type]
            .outerjoin(d, d.message_id == Message.id)  # type: ignore[arg-type]
            .where(
                Conversation.channel == CHANNEL,
                or_(
                    Conversation.state != "CLOSED",
                    and_(
                        Conversation.closed_at.is_not(None),  # type: ignore[union-attr]
                        Conversation.closed_at >= now - timedelta(hours=closed_within_h),  # type: ignore[operator]
                    ),
                ),
                Customer.unreachable.is_(False),  # type: ignore[attr-defined]
                Message.sender.in_(OUTBOUND_SENDERS),  # type: ignore[attr-defined]
                Message.created_at <= now - timedelta(seconds=settled_s),
                or_(d.message_id.is_(None), d.status == SENDING),  # type: ignore[union-attr]
            )
            .group_by(Message.conversation_id)
            .limit(limit)
        )
        async with self._sql_sessions() as s:
            return list((await s.scalars(query)).all())

    async def deliveries(self, conversation_id: str) -> list[TelegramDelivery]:
        """The ledger rows of a conversation (for operators and tests)."""
        query = (
            select(TelegramDelivery)
            .where(TelegramDelivery.conversation_id == conversation_id)
            .order_by(TelegramDelivery.message_id)  # type: ignore[arg-type]
        )
        async with self._sql_sessions() as s:
            return list((await s.scalars(query)).all())

    async def offered_option(self, data: str, chat_id: str) -> tuple[int, str, str] | None:
        """Resolve a button's callback_data ("q:<message id>:<index>") to (message id, title,
        payload) of an option we really offered in this chat; None for anything else."""
        parts = data.split(":")
        if len(parts) != 3 or parts[0] != "q" or not parts[1].isdigit() or not parts[2].isdigit():
            return None
        message_id, index = int(parts[1]), int(parts[2])
        if message_id > 2**63 - 1:
            return None
        query = (
            select(Message)
            .join(Conversation, Conversation.id == Message.conversation_id)  # type: ignore[arg-type]
            .join(Customer, Customer.id == Conversation.customer_id)  # type: ignore[arg-type]
            .where(
                Message.id == message_id,
                Message.sender.in_(OUTBOUND_SENDERS),  # type: ignore[attr-defined]
                Customer.channel == CHANNEL,
                Customer.external_id == chat_id,
            )
        )
        async with self._sql_sessions() as s:
            message = (await s.scalars(query)).first()
        quick = ((message.payload or {}).get("quick_replies") if message else None) or []
        if index >= len(quick) or not isinstance(quick[index], dict):
            return None
        title, payload = quick[index].get("title"), quick[index].get("payload")
        if not isinstance(title, str) or not isinstance(payload, str) or not payload:
            return None
        return message_id, title, payload
