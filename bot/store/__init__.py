"""Durable SQL store: customers, conversations, transcripts and escalations.

`Database` (bot/store/db.py) is the only way in; schema changes are Alembic migrations in
bot/store/migrations, applied by `await Database.migrate()`.
"""

from bot.store.db import Database
from bot.store.models import (
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
