"""The durable tables: customers, conversations, their messages and escalation history.

All models live in this one module so that `SQLModel.metadata` (used by Alembic's env.py and
by the migration-vs-model test) sees every table. The schema itself is owned by the hand
written migrations in bot/core/store/migrations; a change here needs a new migration there.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Any
from uuid import uuid4

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Integer,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from bot.core.vocabulary import State

metadata = SQLModel.metadata


def utcnow() -> datetime:
    """The one clock for stored timestamps: aware, UTC."""
    return datetime.now(timezone.utc)


def new_id() -> str:
    """Random, unguessable, URL-safe primary keys (customer and conversation ids reach clients)."""
    return uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """TIMESTAMPTZ on PostgreSQL; on SQLite (no time zones) stored as UTC and read back aware.

    Without this, SQLite hands back naive datetimes and comparisons with aware ones blow up.
    Naive input is rejected: a naive timestamp is a bug upstream, not something to guess about.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store timezone-aware UTC timestamps")
        value = value.astimezone(timezone.utc)
        # SQLite stores text; drop the offset so every stored value sorts and compares alike.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# 64-bit on PostgreSQL; SQLite only autoincrements an INTEGER PRIMARY KEY (its rowid alias).
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Channel(StrEnum):
    WIDGET = "widget"
    TELEGRAM = "telegram"


ConversationState = State  # the one state vocabulary (bot.core.vocabulary), as stored


class Sender(StrEnum):
    CUSTOMER = "customer"
    BOT = "bot"
    AGENT = "agent"
    SYSTEM = "system"
    NOTE = "note"  # internal agent note: never shown to the customer


class EscalationKind(StrEnum):
    ESCALATED = "escalated"
    CLAIMED = "claimed"
    TRANSFERRED = "transferred"
    RELEASED = "released"
    RESOLVED = "resolved"
    SLA_BREACH = "sla_breach"
    CALLBACK_REQUESTED = "callback_requested"
    SAFETY_QUESTION = "safety_question"  # a possible hazard: the bot asked; note = outcome


def _ts(*, nullable: bool) -> Any:
    """A timestamp column; required ones default to now."""
    if nullable:
        return Field(default=None, sa_type=UTCDateTime, nullable=True)
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Customer(SQLModel, table=True):
    """One person on one channel (the same human on Telegram and the widget is two rows)."""

    __tablename__ = "customer"
    __table_args__ = (
        UniqueConstraint("channel", "external_id", name="uq_customer_channel_external_id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True)
    channel: str
    external_id: str  # widget visitor id or Telegram chat id
    display_name: str | None = None
    language: str | None = None
    unreachable: bool = False  # e.g. the Telegram user blocked the bot
    created_at: datetime = _ts(nullable=False)
    last_seen_at: datetime = _ts(nullable=False)


class Conversation(SQLModel, table=True):
    __tablename__ = "conversation"
    __table_args__ = (
        ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name="fk_conversation_customer_id_customer"
        ),
        Index("ix_conversation_state", "state"),
    )

    id: str = Field(default_factory=new_id, primary_key=True)
    customer_id: str = Field(index=True)
    channel: str
    language: str  # "vi" | "en"
    state: str = ConversationState.BOT.value
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)
    escalated_at: datetime | None = _ts(nullable=True)
    first_human_reply_at: datetime | None = _ts(nullable=True)
    resolved_at: datetime | None = _ts(nullable=True)
    closed_at: datetime | None = _ts(nullable=True)
    reopen_count: int = 0
    queue: str | None = None
    severity: str | None = None
    agent_id: str | None = None
    bot_only: bool = True  # False once a human was involved; for containment-rate KPIs


class Message(SQLModel, table=True):
    __tablename__ = "message"
    __table_args__ = (
        ForeignKeyConstraint(
            ["conversation_id"], ["conversation.id"], name="fk_message_conversation_id_conversation"
        ),
        # Idempotency for client retries; NULL client_msg_id never conflicts (both dialects).
        UniqueConstraint(
            "conversation_id", "client_msg_id", name="uq_message_conversation_id_client_msg_id"
        ),
        # Transcript reads; also serves every lookup by conversation_id alone.
        Index("ix_message_conversation_id_id", "conversation_id", "id"),
        # Crash-recovery scan stays cheap however large the table grows.
        Index(
            "ix_message_unprocessed",
            "created_at",
            sqlite_where=text("sender = 'customer' AND processed_at IS NULL"),
            postgresql_where=text("sender = 'customer' AND processed_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    conversation_id: str
    sender: str
    sender_id: str | None = None  # e.g. the agent's id
    text: str = Field(sa_type=Text)
    payload: dict[str, Any] | None = Field(default=None, sa_type=JSON(none_as_null=True))
    client_msg_id: str | None = None
    intent: str | None = None
    confidence: float | None = None
    created_at: datetime = _ts(nullable=False)
    processed_at: datetime | None = _ts(nullable=True)  # set once the bot engine handled it

    @property
    def stored_id(self) -> int:
        """The id of a stored message (None only before its INSERT)."""
        if self.id is None:
            raise ValueError("the message is not stored yet")
        return self.id


class Escalation(SQLModel, table=True):
    """Append-only handoff history; the conversation row holds the current state."""

    __tablename__ = "escalation"
    __table_args__ = (
        ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name="fk_escalation_conversation_id_conversation",
        ),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    conversation_id: str = Field(index=True)
    kind: str
    reason: str | None = Field(default=None, sa_type=Text)
    severity: str | None = None
    queue: str | None = None
    actor: str = "bot"  # "bot", "system" or an agent id
    note: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = _ts(nullable=False)


class Role(StrEnum):
    """What a console user may do; each role includes nothing implicitly except admin (all)."""

    AGENT = "agent"  # handles chats in the queues they serve
    SUPERVISOR = "supervisor"  # all queues, all agents, reassigns, sees SLA breaches
    MANAGER = "manager"  # reports and exports
    ADMIN = "admin"  # everything, including accounts


class AgentAccount(SQLModel, table=True):
    """A console user (agent, supervisor, manager or admin). Passwords are argon2 hashes."""

    __tablename__ = "agent_account"
    __table_args__ = (UniqueConstraint("username", name="uq_agent_account_username"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    username: str
    display_name: str
    role: str = Role.AGENT.value
    password_hash: str
    queues: list[str] = Field(default_factory=list, sa_type=JSON)  # skills: queues served
    max_chats: int = 3
    disabled: bool = False
    created_at: datetime = _ts(nullable=False)
    password_changed_at: datetime = _ts(nullable=False)


# -- surveys: appended here so SQLModel.metadata sees them; migration 0004_surveys --


class SurveyStatus(StrEnum):
    ASKED = "asked"  # questions under way
    COMPLETED = "completed"  # every question answered (the comment may be empty)
    SKIPPED = "skipped"  # the customer declined, possibly after answering some questions
    EXPIRED = "expired"  # nobody answered within surveys.expiry_hours
    ABANDONED = "abandoned"  # the customer moved on to a new question instead


class SurveyResponse(SQLModel, table=True):
    """One row per resolved conversation: the survey answers next to a snapshot of the
    conversation's milestones, so reports and exports read one table, in one pass.

    Written when the survey is offered (so response rate = answered / offered) and updated
    as answers arrive; `step` is the question the customer is on, which makes every answer
    a conditional UPDATE: retries and double clicks cannot record an answer twice.
    """

    __tablename__ = "survey_response"
    __table_args__ = (
        ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name="fk_survey_response_conversation_id_conversation",
        ),
        UniqueConstraint("conversation_id", name="uq_survey_response_conversation_id"),
        Index("ix_survey_response_resolved_at", "resolved_at"),
        Index("ix_survey_response_customer_id_resolved_at", "customer_id", "resolved_at"),
        Index("ix_survey_response_status_expires_at", "status", "expires_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    conversation_id: str
    customer_id: str
    channel: str
    language: str
    queue: str | None = None
    severity: str | None = None
    agent_id: str | None = None
    bot_only: bool = True
    reopened: bool = False  # reopened at least once, or written again later (see FCR)
    demo: bool = False  # synthetic, from `careline demo-data`
    status: str = SurveyStatus.ASKED.value
    step: str | None = None  # the question awaiting an answer (ces|csat|nps|comment)
    ces: int | None = None  # 1..7, higher is easier
    csat: int | None = None  # 1..5
    nps: int | None = None  # 0..10, only when surveys.nps_enabled
    comment: str | None = Field(default=None, sa_type=Text)
    conversation_created_at: datetime = _ts(nullable=False)
    escalated_at: datetime | None = _ts(nullable=True)
    first_human_reply_at: datetime | None = _ts(nullable=True)
    resolved_at: datetime = _ts(nullable=False)
    repeat_contact_at: datetime | None = _ts(nullable=True)  # new conversation within 7 days
    asked_at: datetime = _ts(nullable=False)
    expires_at: datetime = _ts(nullable=False)
    answered_at: datetime | None = _ts(nullable=True)  # the first answer
    finished_at: datetime | None = _ts(nullable=True)  # completed, skipped or expired


# -- Telegram channel -------------------------------------------------------------------


class TelegramDelivery(SQLModel, table=True):
    """Which stored messages reached the customer's Telegram chat, and how far a split one got.

    One row per outbound message once its first part was sent. The sender delivers, in id
    order, a conversation's bot/agent/system messages without a `delivered` row, so a crash
    re-sends at most the one part in flight (Telegram itself is at-least-once too), and a
    message that commits late is still found.
    """

    __tablename__ = "telegram_delivery"
    __table_args__ = (
        ForeignKeyConstraint(
            ["message_id"], ["message.id"], name="fk_telegram_delivery_message_id_message"
        ),
        Index("ix_telegram_delivery_conversation_id", "conversation_id"),
    )

    message_id: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    conversation_id: str
    parts_sent: int = 0  # long messages go out in parts of at most 4,096 characters
    status: str = "sending"  # sending | delivered | failed (Telegram refused this message)
    error: str | None = Field(default=None, sa_type=Text)
    updated_at: datetime = _ts(nullable=False)


# -- agent console: canned responses; migration 0005_canned --


class CannedResponse(SQLModel, table=True):
    """A ready-made reply agents insert into a chat (managed by supervisors), one language each.

    Kept in SQL, not config: supervisors edit them from the console while agents use them.
    """

    __tablename__ = "canned_response"
    __table_args__ = (
        UniqueConstraint("language", "title", name="uq_canned_response_language_title"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    language: str  # "vi" | "en"
    title: str  # short label agents search and pick by
    text: str = Field(sa_type=Text)
    created_by: str  # account id of the supervisor who wrote it
    updated_by: str
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)
