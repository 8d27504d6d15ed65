"""Conversation states and the transitions between them.

BOT ──► WAITING_AGENT ──► WITH_AGENT ──► SURVEY ──► CLOSED, with returns to the bot
(an agent releases the chat) and reopening (the customer writes again after close).
Every state change goes through `check_transition`, so an illegal jump is a bug we see.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    BOT = "BOT"
    WAITING_AGENT = "WAITING_AGENT"
    WITH_AGENT = "WITH_AGENT"
    SURVEY = "SURVEY"
    CLOSED = "CLOSED"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.BOT: frozenset({State.WAITING_AGENT, State.SURVEY, State.CLOSED}),
    State.WAITING_AGENT: frozenset({State.WITH_AGENT, State.BOT, State.SURVEY, State.CLOSED}),
    State.WITH_AGENT: frozenset({State.WAITING_AGENT, State.BOT, State.SURVEY, State.CLOSED}),
    State.SURVEY: frozenset({State.CLOSED, State.BOT}),
    State.CLOSED: frozenset({State.BOT}),  # reopen
}


class IllegalTransition(ValueError):
    pass


def check_transition(current: str, new: State) -> None:
    if new not in TRANSITIONS[State(current)]:
        raise IllegalTransition(f"conversation cannot go from {current} to {new}")
