"""A stored message as channels and consoles see it: the widget protocol's Message object.

It lives in the ground layer because every adapter (widget, Telegram, the agent console)
shows messages the same way, and none of them should need the conversation core for it."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from bot.core.store.models import Message


def message_view(m: Message) -> dict[str, Any]:
    created = m.created_at
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    view: dict[str, Any] = {
        "id": m.id,
        "sender": m.sender,
        "text": m.text,
        "created_at": created.isoformat() if created else None,
    }
    if m.client_msg_id and m.sender == "customer":
        view["client_msg_id"] = m.client_msg_id
    quick = (m.payload or {}).get("quick_replies")
    if quick:
        view["quick_replies"] = quick
    return view


def message_event(m: Message) -> dict[str, Any]:
    """The event-stream record of a new message."""
    return {"kind": "message", "message": message_view(m)}


__all__ = ["message_event", "message_view"]
