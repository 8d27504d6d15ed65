"""The help desk's side of a handoff as the conversation core sees it (`WaitingLine`).

Why a separate object: the core must put a chat in line, tell the customer their place and
wait, and free the agent when the chat ends, but it must know nothing of agents, presence or
staffing. This wraps the desk's `AgentQueues` (which only handoff/ touches) and the staffing
rules, and is built before the engine, so neither needs the other to exist first.
"""

from __future__ import annotations

from bot.conversation.ports import Availability
from bot.core.settings import Settings
from handoff.hours import describe, is_open
from handoff.queues import AgentQueues


class HandoffLine:
    def __init__(self, settings: Settings, queues: AgentQueues) -> None:
        self.settings = settings
        self.queues = queues

    async def enqueue(
        self, conversation_id: str, queue: str, severity: str, *, reasons: tuple[str, ...],
        language: str | None, channel: str | None,
    ) -> None:  # fmt: skip
        await self.queues.enqueue(
            conversation_id, queue, severity, reasons=reasons, language=language, channel=channel
        )

    async def position(self, conversation_id: str) -> tuple[str, int] | None:
        return await self.queues.position(conversation_id)

    async def estimated_wait_s(self, conversation_id: str) -> float | None:
        return await self.queues.estimated_wait_s(conversation_id)

    async def raise_priority(self, conversation_id: str, severity: str) -> None:
        await self.queues.raise_priority(conversation_id, severity)

    async def closed(self, conversation_id: str, agent_id: str | None) -> None:
        await self.queues.remove(conversation_id)
        if agent_id:
            await self.queues.resolve(agent_id, conversation_id)  # the agent has room again

    async def availability(self, queue: str) -> Availability:
        """Who can answer `queue` now: an agent online in its hours ("joining"), else its
        around-the-clock phone line ("hotline"), else an honest callback ("callback")."""
        staffing = self.settings.handoff.staffing.get(queue)
        hours = self.settings.handoff.opening_hours
        staffed_now = (staffing is not None and staffing.hours == "always") or is_open(hours)
        online = any(a.status == "online" and queue in a.skills for a in await self.queues.agents())
        if staffed_now and online:
            return Availability("joining", None, describe(hours))
        if staffing is not None and staffing.hotline:
            return Availability("hotline", staffing.hotline, describe(hours))
        return Availability("callback", None, describe(hours))


__all__ = ["HandoffLine"]
