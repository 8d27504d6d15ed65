"""Durable SQL store: customers, conversations, transcripts and escalations.

`Database` (bot/core/store/db.py) is the only way in; schema changes are Alembic migrations in
bot/core/store/migrations, applied by `await Database.migrate()`.
"""

from bot.core.store.db import Database
from bot.core.store.models import (
    Channel,
    Conversation,
    ConversationState,
    Customer,
    Escalation,
    EscalationKind,
    Message,
    Sender,
    utcnow,
)

__all__ = [
    "Channel",
    "Conversation",
    "ConversationState",
    "Customer",
    "Database",
    "Escalation",
    "EscalationKind",
    "Message",
    "Sender",
    "utcnow",
]
