"""The narrow interfaces between the conversation core and the layers around it.

Why: channels, the help desk and surveys each need a small part of the core, and the core
needs a small part of each of them. Naming those parts here, as Protocols and plain event
records, lets every package depend on this module instead of on each other's classes (the
model is Rasa's channel, which receives only an `on_new_message` callback and an output
channel). `handoff/` and `surveys/` import nothing else of `bot.conversation`.

- what channels call: `ChannelInbound` (accept, answer directly, end);
- what the core needs from the help desk: `WaitingLine` (put in line, place, wait estimate,
  who can answer a queue, a chat that closed);
- what it needs from surveys: `ClosingFlow`, offered the conversation when it is resolved;
- what surveys need of it: `ConversationOutput` (a stored bot message, a checked state
  change);
- what the help desk calls: `AgentActions`;
- the events it announces: `Escalated` and the listener lists of `ConversationEvents`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from bot.core.messages import InboundMessage, QuickReply
from bot.core.store.models import Conversation, Message
from bot.core.vocabulary import State


@dataclass(frozen=True)
class Accepted:
    conversation_id: str
    message_id: int
    created: bool  # False: a retry of a message we already had


class NotWithAgent(Exception):
    """An agent action on a conversation that is no longer with that agent."""


@dataclass(frozen=True)
class Availability:
    """Who can answer a queue right now (the help desk knows; the core only asks)."""

    kind: str  # "joining" (an agent is online) | "hotline" (a 24/7 phone line) | "callback"
    hotline: str | None
    hours: str  # opening hours, as shown to customers


@dataclass(frozen=True)
class Escalated:
    conversation_id: str
    queue: str
    severity: str
    reason: str
    language: str
    channel: str


@dataclass
class ConversationEvents:
    """Listeners the core calls, in order, after the step has been stored."""

    # every escalation (the help desk starts SLA timers, alerts consoles, assigns agents)
    escalated: list[Callable[[Escalated], Awaitable[None]]] = field(default_factory=list)
    # a handed-off chat's severity rose: (conversation id, new severity)
    severity_raised: list[Callable[[str, str], Awaitable[None]]] = field(default_factory=list)
    # a waiting customer left contact details: (conversation id, contact as shown)
    callback_requested: list[Callable[[str, str], Awaitable[None]]] = field(default_factory=list)


class ChannelInbound(Protocol):
    """What a channel adapter may ask of the core."""

    async def accept(self, inbound: InboundMessage) -> Accepted: ...

    async def answer_directly(
        self, inbound: InboundMessage, key: str, text: str, *, language: str | None = None
    ) -> Accepted: ...

    async def end(self, conversation_id: str) -> None: ...


class WaitingLine(Protocol):
    """The help desk's side of a handoff, as the core needs it."""

    async def enqueue(
        self, conversation_id: str, queue: str, severity: str, *, reasons: tuple[str, ...],
        language: str | None, channel: str | None,
    ) -> None: ...  # fmt: skip

    async def position(self, conversation_id: str) -> tuple[str, int] | None: ...

    async def estimated_wait_s(self, conversation_id: str) -> float | None: ...

    async def raise_priority(self, conversation_id: str, severity: str) -> None: ...

    async def availability(self, queue: str) -> Availability: ...

    async def closed(self, conversation_id: str, agent_id: str | None) -> None:
        """The chat ended: out of line, and its agent (if any) has the room back."""
        ...


class ClosingFlow(Protocol):
    """What happens between "resolved" and "closed" (the micro-survey)."""

    def is_answer(self, payload: str | None) -> bool:
        """A late answer to this flow (it must never reopen a closed chat)."""
        ...

    def wants(self, conv: Conversation, msg: Message) -> bool: ...

    async def on_message(self, conv: Conversation, msg: Message) -> bool:
        """Handle a customer message; False when the customer left the flow."""
        ...

    async def start(self, conv: Conversation) -> bool:
        """Offered a resolved conversation; False leaves it to be closed at once."""
        ...

    async def skip(self, conv: Conversation) -> None: ...

    async def reopened(self, conversation_id: str) -> None: ...

    async def new_contact(self, customer_id: str, at: datetime) -> None: ...


class ConversationOutput(Protocol):
    """The transcript writer, as a closing flow uses it."""

    async def bot_message(
        self, conv: Conversation, idempotency_key: str, text: str, *, sender: str = "bot",
        quick_replies: tuple[QuickReply, ...] = (), intent: str | None = None,
        confidence: float | None = None, kind: str = "survey",
    ) -> None: ...  # fmt: skip

    async def set_state(self, conv: Conversation, state: State, **fields: Any) -> Conversation: ...


class AgentActions(Protocol):
    """What the help desk does to a conversation (authorization is the desk's job)."""

    events: ConversationEvents

    async def agent_joined(
        self, conversation_id: str, agent_id: str, agent_name: str
    ) -> Conversation: ...

    async def agent_message(
        self, conversation_id: str, agent_id: str, text: str, client_msg_id: str
    ) -> tuple[Message, bool]: ...

    async def agent_note(self, conversation_id: str, agent_id: str, text: str) -> Message: ...

    async def requeue(self, conversation_id: str, queue: str) -> Conversation: ...

    async def return_to_bot(self, conversation_id: str) -> Conversation: ...

    async def offer_callback(self, conversation_id: str, *, closed: bool, hours: str) -> None: ...

    async def end(self, conversation_id: str) -> None: ...


__all__ = [
    "Accepted",
    "AgentActions",
    "Availability",
    "ChannelInbound",
    "ClosingFlow",
    "ConversationEvents",
    "ConversationOutput",
    "Escalated",
    "NotWithAgent",
    "WaitingLine",
]
