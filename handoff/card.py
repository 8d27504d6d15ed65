"""The handoff context card: everything an agent needs in the first ten seconds of a chat.

Customer, channel, language, severity with the reasons triage gave, the intent and
confidence the bot last saw, the whole transcript (with internal notes, which only agents
see), the handoff history, and the customer's previous conversations.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.core.store.db import Database
from bot.core.store.models import Conversation, Message
from bot.core.views import message_view


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


def _message(m: Message) -> dict[str, Any]:
    view = message_view(m)
    if m.sender in ("agent", "note"):
        view["sender_id"] = m.sender_id
    if m.intent:
        view["intent"] = m.intent
        view["confidence"] = m.confidence
    return view


async def context_card(
    db: Database, conv: Conversation, *, sla_deadline: float | None = None, previous: int = 5
) -> dict[str, Any]:
    customer = await db.get_customer(conv.customer_id)
    transcript = await db.transcript(conv.id)
    history = await db.escalations(conv.id)
    understood = next((m for m in reversed(transcript) if m.intent), None)
    reasons = [e.reason for e in history if e.kind == "escalated" and e.reason]
    earlier = [
        c
        for c in await db.list_conversations(customer_id=conv.customer_id, limit=previous + 1)
        if c.id != conv.id
    ][:previous]
    return {
        "conversation": {
            "id": conv.id,
            "state": conv.state,
            "channel": conv.channel,
            "language": conv.language,
            "queue": conv.queue,
            "severity": conv.severity,
            "agent_id": conv.agent_id,
            "created_at": _iso(conv.created_at),
            "escalated_at": _iso(conv.escalated_at),
            "first_human_reply_at": _iso(conv.first_human_reply_at),
            "reopen_count": conv.reopen_count,
            "sla_deadline": sla_deadline,
        },
        "customer": {
            "id": customer.id if customer else conv.customer_id,
            "display_name": customer.display_name if customer else None,
            "channel": customer.channel if customer else conv.channel,
            "language": customer.language if customer else None,
            "unreachable": bool(customer and customer.unreachable),
            "since": _iso(customer.created_at) if customer else None,
        },
        "reasons": reasons,
        "intent": understood.intent if understood else None,
        "confidence": understood.confidence if understood else None,
        "transcript": [_message(m) for m in transcript],
        "history": [
            {
                "kind": e.kind,
                "actor": e.actor,
                "queue": e.queue,
                "severity": e.severity,
                "reason": e.reason,
                "note": e.note,
                "at": _iso(e.created_at),
            }
            for e in history
        ],
        "previous_conversations": [
            {
                "id": c.id,
                "state": c.state,
                "created_at": _iso(c.created_at),
                "queue": c.queue,
                "severity": c.severity,
                "bot_only": c.bot_only,
            }
            for c in earlier
        ],
    }
