"""Every Redis key and channel name careline uses, under one configurable prefix.

The prefix lets several deployments (or parallel test runs) share one Redis without
touching each other's queues. The agent queues' Lua scripts (handoff/queues.py) build their
own names from the prefix inside Redis, where they run; their layout is listed there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "cl"

    @property
    def inbox(self) -> str:
        return f"{self.prefix}:inbox"

    def events(self, conversation_id: str) -> str:
        return f"{self.prefix}:conv:{conversation_id}:events"

    def notify(self, conversation_id: str) -> str:
        return f"{self.prefix}:conv:{conversation_id}:notify"

    @property
    def console(self) -> str:
        """Pub/Sub channel of console-wide events: escalations, claims, SLA breaches, notes."""
        return f"{self.prefix}:console"

    def bot_state(self, conversation_id: str) -> str:
        return f"{self.prefix}:conv:{conversation_id}:bot"

    def safety_checks(self) -> str:
        """Sorted set: conversations with an unanswered safety question, by deadline."""
        return f"{self.prefix}:safety_checks"

    def conversation_lock(self, conversation_id: str) -> str:
        return f"{self.prefix}:conv:{conversation_id}:lock"

    def customer_lock(self, customer_id: str) -> str:
        return f"{self.prefix}:cust:{customer_id}:lock"

    def replica(self, replica: str) -> str:
        return f"{self.prefix}:replica:{replica}"

    def rate_window(self, sender: str, window_s: int) -> str:
        return f"{self.prefix}:rl:win{window_s}:{sender}"

    # -- console sessions and logins (bot/auth) -------------------------------------------

    def session(self, sid: str) -> str:
        return f"{self.prefix}:sess:{sid}"

    def sessions_of(self, account_id: str) -> str:
        return f"{self.prefix}:sess-of:{account_id}"

    @property
    def sessions_revoked(self) -> str:
        """Pub/Sub channel: an account's sessions ended."""
        return f"{self.prefix}:sess-revoked"

    def login_failures_of_user(self, username: str) -> str:
        return f"{self.prefix}:login-fail:u:{username[:64]}"

    def login_failures_from(self, address: str) -> str:
        return f"{self.prefix}:login-fail:ip:{address}"

    # -- push channels' outboxes and Telegram -------------------------------------------------

    def outbox(self, channel: str) -> str:
        return f"{self.prefix}:outbox:{channel}"

    def telegram(self, bot_id: int | str) -> str:
        """The prefix of one Telegram bot's update dedup and slow-down marks."""
        return f"{self.prefix}:tg:{bot_id}"

    @property
    def telegram_retries(self) -> str:
        """Sorted set: conversation id -> when its delivery is due again."""
        return f"{self.prefix}:tg:retry"

    @property
    def telegram_attempts(self) -> str:
        """Hash: conversation id -> failed deliveries in a row."""
        return f"{self.prefix}:tg:attempts"

    @property
    def telegram_hold_prefix(self) -> str:
        """+ conversation id: a key with a TTL; do not send before it expires."""
        return f"{self.prefix}:tg:hold:"

    @property
    def telegram_delivery_lock_prefix(self) -> str:
        return f"{self.prefix}:tg:deliver:"

    # -- first-response SLA timers (handoff/sla.py) ---------------------------------------

    @property
    def sla_timers(self) -> str:
        return f"{self.prefix}:sla"

    @property
    def sla_firing(self) -> str:
        return f"{self.prefix}:sla:firing"

    def sla_timer(self, conversation_id: str) -> str:
        return f"{self.prefix}:sla:{conversation_id}"
