"""Channel-neutral message types.

Channels adapt platform updates (a Telegram Update, a widget WebSocket frame) into
`InboundMessage`; the engine never sees a platform object. What goes back out is the
conversation's event stream (bot/core/live/streams.py), which every channel follows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class QuickReply:
    title: str
    payload: str

    def as_dict(self) -> dict[str, str]:
        return {"title": self.title, "payload": self.payload}


@dataclass(frozen=True)
class InboundMessage:
    channel: str  # "widget" | "telegram"
    external_id: str  # the customer's id on that channel (visitor id, Telegram chat id)
    text: str
    client_msg_id: str  # the channel's idempotency key: a retry carries the same one
    locale: str | None = None  # "vi" | "en" hint from the client
    payload: str | None = None  # quick-reply payload, e.g. "intent:warranty_policy"
    display_name: str | None = None
    attachment: dict[str, Any] | None = None  # non-text content, stored for the agent
    meta: dict[str, Any] = field(default_factory=dict)
    # The channel made this identity just now (a widget visitor who came without a token):
    # no customer row is likely to exist, so none is looked for before one is made.
    new_identity: bool = False
