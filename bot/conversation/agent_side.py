"""What the help desk does to a conversation (its `AgentActions` port): a person joins,
replies, notes, transfers or hands back to the bot. Authorization is the desk's job; every
action takes the conversation's lock and re-checks its state there."""

from __future__ import annotations

from bot.conversation.parts import EngineParts, now
from bot.conversation.ports import (
    NotWithAgent,
)
from bot.core.live.locks import redis_lock
from bot.core.store.models import Conversation, Message
from bot.core.vocabulary import State


class AgentSide(EngineParts):
    async def agent_joined(
        self, conversation_id: str, agent_id: str, agent_name: str
    ) -> Conversation:
        """A person took the chat: WITH_AGENT, and the customer is told who it is."""
        async with redis_lock(self.redis, self.keys.conversation_lock(conversation_id)):
            conv = await self._require(conversation_id)
            if conv.state == State.WITH_AGENT and conv.agent_id == agent_id:
                return conv
            if conv.state == State.WITH_AGENT:
                conv = await self.db.update_conversation(conv.id, agent_id=agent_id)
            else:
                conv = await self.transcript.set_state(conv, State.WITH_AGENT, agent_id=agent_id)
            text = self.content.system("agent_joined", conv.language, agent=agent_name)
            await self.transcript.system_message(conv, text)
            return conv

    async def agent_message(
        self, conversation_id: str, agent_id: str, text: str, client_msg_id: str
    ) -> tuple[Message, bool]:
        """An agent's reply; idempotent by the console's client_msg_id. Returns (message,
        first): `first` when it is the conversation's first human reply (SLA met).

        Under the conversation's lock and re-checked there, so a reply racing a resolve or a
        transfer is refused (NotWithAgent) instead of landing after the agent let go."""
        async with redis_lock(self.redis, self.keys.conversation_lock(conversation_id)):
            conv = await self._require(conversation_id)
            if conv.state != State.WITH_AGENT or conv.agent_id != agent_id:
                raise NotWithAgent(f"the conversation is {conv.state}, not with this agent")
            msg, created = await self.db.add_message(
                conv.id,
                "agent",
                text,
                sender_id=agent_id,
                client_msg_id=f"ag-{agent_id}-{client_msg_id}",
                processed=True,
            )
            first = False
            if created:
                if conv.first_human_reply_at is None:
                    conv = await self.db.update_conversation(conv.id, first_human_reply_at=now())
                    first = True
                await self.transcript.publish(conv, msg)
            return msg, first

    async def agent_note(self, conversation_id: str, agent_id: str, text: str) -> Message:
        """An internal note: stored, never published to the customer's stream."""
        msg, _ = await self.db.add_message(
            conversation_id, "note", text, sender_id=agent_id, processed=True
        )
        return msg

    async def requeue(self, conversation_id: str, queue: str) -> Conversation:
        """Transferred to another queue: waiting again, and the customer knows why."""
        async with redis_lock(self.redis, self.keys.conversation_lock(conversation_id)):
            conv = await self._require(conversation_id)
            if conv.state == State.WITH_AGENT:
                conv = await self.transcript.set_state(
                    conv, State.WAITING_AGENT, agent_id=None, queue=queue
                )
            else:
                conv = await self.db.update_conversation(conv.id, queue=queue)
            await self.transcript.system_message(
                conv, self.content.system("transferred", conv.language)
            )
            return conv

    async def return_to_bot(self, conversation_id: str) -> Conversation:
        """The agent released the chat: the bot answers again, with a fresh miss count."""
        async with redis_lock(self.redis, self.keys.conversation_lock(conversation_id)):
            conv = await self._require(conversation_id)
            if conv.state == State.BOT:
                return conv
            conv = await self.transcript.set_state(conv, State.BOT, agent_id=None)
            await self.redis.delete(self._bot_key(conv.id))
            await self.transcript.system_message(
                conv, self.content.system("returned_to_bot", conv.language)
            )
            return conv
