"""Every Redis key and channel name careline uses, under one configurable prefix.

The prefix lets several deployments (or parallel test runs) share one Redis without
touching each other's queues.
"""

from __future__ import annotations

import time
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

    def ip_window(self, ip: str, window_s: int) -> str:
        return f"{self.prefix}:rl:ip:{ip}:{int(time.time() // window_s)}"
