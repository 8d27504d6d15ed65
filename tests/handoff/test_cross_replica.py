"""A customer connected to replica A and an agent connected to replica B of one deployment
(shared Redis and PostgreSQL) talk to each other in both directions."""

from __future__ import annotations

from bot.channels.widget_client import WidgetClient
from handoff.web.agent_client import AgentClient
from tests.handoff.conftest import PASSWORD, desk_settings
from tests.support import backend_settings, running_gateway


async def test_customer_on_a_agent_on_b(tmp_path, nlu_url) -> None:  # type: ignore[no-untyped-def]
    async with backend_settings("postgresql", tmp_path) as s:
        s = desk_settings(s)
        async with (
            running_gateway(s, nlu_url, replica="A") as a,
            running_gateway(s, nlu_url, replica="B") as b,
        ):
            await b.gw.desk.accounts.add("an", PASSWORD, display_name="An", queues=["general"])
            customer = WidgetClient(a.ws_url)
            async with AgentClient(b.url) as agent:
                await agent.login("an", PASSWORD)
                await agent.connect()
                await agent.online()
                await customer.connect()
                await customer.say("cho mình gặp nhân viên")
                cid = (await agent.console_event("assigned"))["conversation_id"]
                await agent.send({"type": "watch", "conversation_id": cid})
                await agent.next_frame(lambda f: f["type"] == "watching")

                # B → A: the agent's reply, sent through replica B, reaches the widget on A.
                await agent.post(
                    f"/api/agent/conversations/{cid}/messages",
                    {"text": "Chào bạn, An đây ạ", "client_msg_id": "1"},
                )
                reply = await customer.expect(
                    lambda f: (
                        f["type"] == "event"
                        and f["event"].get("message", {}).get("sender") == "agent"
                    )
                )
                assert reply["event"]["message"]["text"] == "Chào bạn, An đây ạ"

                # A → B: the customer's answer, accepted by A, reaches the console on B,
                # typing indicator included.
                await customer.send_frame({"type": "typing", "on": True})
                await agent.next_frame(lambda f: f["type"] == "typing" and f["on"] is True)
                await customer.say("dạ mình cần đổi máy")
                got = await agent.next_frame(
                    lambda f: (
                        f["type"] == "event"
                        and f["event"].get("message", {}).get("sender") == "customer"
                        and f["event"]["message"]["text"] == "dạ mình cần đổi máy"
                    )
                )
                assert got["conversation_id"] == cid
            await customer.close()
