"""The console's extra read routes (handoff/web/console_api.py) on SQLite and PostgreSQL:
`GET /api/agent/config` and the supervisor's list of chats waiting for or held by a person."""

from __future__ import annotations

import time

from bot.channels.widget_client import WidgetClient, wait_for
from handoff.web.agent_client import AgentAPIError, AgentClient
from tests.handoff.conftest import PASSWORD, add_account
from tests.support import RunningGateway

ASK_PERSON = "I want to talk to a person"


async def test_config_names_every_queue(desk_gateway: RunningGateway) -> None:
    g = desk_gateway
    await add_account(g, "lan", queues=["billing"])
    async with AgentClient(g.url) as agent:
        await agent.login("lan", PASSWORD)
        config = await agent.get("/api/agent/config")
    assert config["queues"] == list(g.settings.triage.queues)  # not only the agent's own
    assert config["languages"] == ["vi", "en"]
    assert 0 < config["heartbeat_s"] <= g.settings.handoff.presence_ttl_s / 3


async def test_supervisor_lists_waiting_and_held_chats(desk_gateway: RunningGateway) -> None:
    g = desk_gateway
    await add_account(g, "minh", role="supervisor")
    await add_account(g, "lan", queues=["general"])
    customer = WidgetClient(g.ws_url)
    async with AgentClient(g.url) as sup, AgentClient(g.url) as agent:
        await sup.login("minh", PASSWORD)
        await agent.login("lan", PASSWORD)
        try:
            await customer.connect()
            await customer.say(ASK_PERSON)
            await customer.expect(
                lambda f: f["type"] == "event" and f["event"].get("state") == "WAITING_AGENT",
                timeout=30,
            )
            cid = customer.conversation_id

            async def listed() -> dict[str, object] | None:
                chats = (await sup.get("/api/supervisor/chats"))["chats"]
                return next((c for c in chats if c["conversation_id"] == cid), None)

            async def with_deadline() -> dict[str, object] | None:
                found = await listed()  # the SLA clock starts just after the state change
                return found if found and found["sla_deadline"] else None

            waiting = await wait_for(with_deadline, timeout=15)
            assert (waiting["state"], waiting["queue"], waiting["agent_id"]) == (
                "WAITING_AGENT",
                "general",
                None,
            )
            assert isinstance(waiting["sla_deadline"], float) and waiting["sla_deadline"] > 0
            assert waiting["sla_deadline"] <= time.time() + 900 + 5  # normal: 15 min

            try:
                await agent.get("/api/supervisor/chats")
                raise AssertionError("an agent listed every chat")
            except AgentAPIError as e:
                assert e.status == 403

            await agent.online()  # auto-assigned to the agent
            held = await wait_for(lambda: _in_state(listed, "WITH_AGENT"), timeout=15)
            assert held["agent_id"] == agent.principal["id"]

            await agent.post(f"/api/agent/conversations/{cid}/resolve")
            assert await listed() is None
        finally:
            await customer.close()


async def _in_state(listed, state: str):  # type: ignore[no-untyped-def]
    found = await listed()
    return found if found and found["state"] == state else None
