"""The words every layer shares: languages, conversation states and their transitions,
severities.

Why one module: these are the project's vocabulary, used from the SQL store to the console;
defined once, a new language or state cannot be known to one layer and not another.

Conversation states: BOT ──► WAITING_AGENT ──► WITH_AGENT ──► SURVEY ──► CLOSED, with
returns to the bot (an agent releases the chat) and reopening (the customer writes again
after close). Every state change goes through `check_transition`, so an illegal jump is a
bug we see.
"""

from __future__ import annotations

from enum import StrEnum

LANGS: tuple[str, ...] = ("vi", "en")  # the languages customers are answered in

SEVERITIES: tuple[str, ...] = ("critical", "high", "normal", "low")  # most severe first
_RANK = {s: len(SEVERITIES) - i for i, s in enumerate(SEVERITIES)}  # low=1 … critical=4


def severity_rank(severity: str) -> int:
    """low=1, normal=2, high=3, critical=4 (ValueError for anything else)."""
    try:
        return _RANK[severity]
    except KeyError:
        raise ValueError(f"unknown severity {severity!r}; expected one of {SEVERITIES}") from None


def max_severity(a: str, b: str) -> str:
    """The more severe of two levels: a conversation's severity never goes down."""
    return a if severity_rank(a) >= severity_rank(b) else b


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
