"""The help desk end to end through the gateway: a customer in the widget, agents on the
agent API and WebSocket, on real Redis and on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from bot.channels.widget_client import WidgetClient, wait_for
from handoff.web.agent_client import AgentAPIError, AgentClient
from tests.handoff.conftest import PASSWORD, add_account, desk_settings
from tests.support import backend_settings, running_gateway

ASK_HUMAN = "cho mình gặp nhân viên tư vấn"


async def _agent(g: Any, username: str, **kw: Any) -> AgentClient:
    await add_account(g, username, **kw)
    a = AgentClient(g.url)
    await a.login(username, PASSWORD)
    await a.connect()
    return a


def _said(c: WidgetClient, sender: str) -> list[str]:
    return [m["text"] for m in c.messages() if m["sender"] == sender]


async def _drain(c: WidgetClient, until: Any, timeout: float = 15.0) -> None:
    await c.expect(lambda f: f["type"] == "event" and until(f["event"]), timeout)


async def _state(c: WidgetClient, state: str) -> None:
    await _drain(c, lambda e: e == {"kind": "state", "state": state})


async def test_escalation_to_agent_and_back(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    g = desk_gateway
    an = await _agent(g, "an", display_name="An Nguyễn", queues=["general", "technical"])
    customer = WidgetClient(g.ws_url)
    try:
        await an.online()
        await customer.connect()
        await customer.say(ASK_HUMAN)

        # The agent's console hears of it and, being the only one online, gets it.
        escalated = await an.console_event("escalated")
        cid = escalated["conversation_id"]
        assert escalated["queue"] == "general" and escalated["sla_deadline"] > escalated["at"]
        await an.console_event("assigned", conversation_id=cid, agent_id=an.principal["id"])
        await _state(customer, "WITH_AGENT")
        await _drain(
            customer, lambda e: e["kind"] == "message" and "An Nguyễn" in e["message"]["text"]
        )

        # The context card: why, what the bot understood, the whole transcript.
        card = await an.get(f"/api/agent/conversations/{cid}")
        assert card["conversation"]["state"] == "WITH_AGENT"
        assert card["intent"] == "request_human" and card["confidence"] > 0.5
        assert any("person" in r or "nhân viên" in r for r in card["reasons"])
        assert [m["text"] for m in card["transcript"] if m["sender"] == "customer"] == [ASK_HUMAN]
        assert [h["kind"] for h in card["history"]] == ["escalated", "claimed"]

        # Both directions, live.
        await an.send({"type": "watch", "conversation_id": cid})
        await an.next_frame(lambda f: f["type"] == "watching")
        await an.post(f"/api/agent/conversations/{cid}/messages",
                      {"text": "Chào bạn, mình là An.", "client_msg_id": "m1"})  # fmt: skip
        # A retried POST (same client_msg_id) is stored once.
        await an.post(f"/api/agent/conversations/{cid}/messages",
                      {"text": "Chào bạn, mình là An.", "client_msg_id": "m1"})  # fmt: skip
        await _drain(
            customer, lambda e: e["kind"] == "message" and e["message"]["sender"] == "agent"
        )
        await customer.say("máy mình bị đơ cảm ứng")
        got = await an.next_frame(
            lambda f: (
                f["type"] == "event" and f["event"].get("message", {}).get("sender") == "customer"
            )
        )
        assert got["event"]["message"]["text"] == "máy mình bị đơ cảm ứng"

        # An internal note: agents see it, the customer never does.
        await an.post(f"/api/agent/conversations/{cid}/notes", {"text": "khách VIP, ưu tiên"})
        card = await an.get(f"/api/agent/conversations/{cid}")
        assert "khách VIP, ưu tiên" in [
            m["text"] for m in card["transcript"] if m["sender"] == "note"
        ]
        assert card["conversation"]["first_human_reply_at"] is not None
        assert card["conversation"]["sla_deadline"] is None  # answered: the SLA clock stopped

        # Return to the bot: it answers FAQs again.
        await an.post(f"/api/agent/conversations/{cid}/release", {"note": "đã hướng dẫn"})
        await _state(customer, "BOT")
        await customer.say("bảo hành bao lâu vậy shop")
        await _drain(
            customer,
            lambda e: (
                e["kind"] == "message"
                and e["message"]["sender"] == "bot"
                and "bảo hành" in e["message"]["text"]
            ),
        )
        assert _said(customer, "agent") == ["Chào bạn, mình là An."]
        assert "khách VIP, ưu tiên" not in [m["text"] for m in customer.messages()]
        history = [(e.kind, e.actor, e.note) for e in await g.gw.db.escalations(cid)]
        assert history == [
            ("escalated", "bot", None),
            ("claimed", an.principal["id"], None),
            ("released", an.principal["id"], "đã hướng dẫn"),
        ]
    finally:
        await customer.close()
        await an.close()


async def test_transfer_resolve_and_access_rules(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    g = desk_gateway
    an = await _agent(g, "an", queues=["general"], max_chats=1)
    binh = await _agent(g, "binh", queues=["billing"])
    sup = await _agent(g, "sup", role="supervisor")
    customer = WidgetClient(g.ws_url)
    try:
        await an.online()
        await customer.connect()
        await customer.say(ASK_HUMAN)
        cid = (await an.console_event("assigned"))["conversation_id"]

        # Another agent can neither read nor act on An's chat.
        for call in (
            binh.get(f"/api/agent/conversations/{cid}"),
            binh.post(
                f"/api/agent/conversations/{cid}/messages", {"text": "hi", "client_msg_id": "x"}
            ),
            binh.post(f"/api/agent/conversations/{cid}/resolve"),
        ):
            with pytest.raises(AgentAPIError) as denied:
                await call
            assert denied.value.status == 403
        # Two claims of one chat: one winner (it is already An's).
        with pytest.raises(AgentAPIError) as taken:
            await binh.post("/api/agent/claim", {"conversation_id": cid})
        assert taken.value.status == 409

        # Transfer to billing, with a note; Binh (billing, online) gets it.
        await binh.online()
        await an.post(f"/api/agent/conversations/{cid}/transfer",
                      {"to_queue": "billing", "note": "hỏi về trả góp"})  # fmt: skip
        await binh.console_event("assigned", conversation_id=cid, agent_id=binh.principal["id"])
        card = await binh.get(f"/api/agent/conversations/{cid}")
        assert card["conversation"]["queue"] == "billing"
        transfer = [h for h in card["history"] if h["kind"] == "transferred"]
        assert transfer and transfer[0]["note"] == "hỏi về trả góp"
        with pytest.raises(AgentAPIError) as gone:
            await an.post(
                f"/api/agent/conversations/{cid}/messages", {"text": "x", "client_msg_id": "y"}
            )
        assert gone.value.status == 403

        # The supervisor sees every agent and may reassign.
        agents = {a["username"]: a for a in (await sup.get("/api/supervisor/agents"))["agents"]}
        assert agents["binh"]["presence"] == "online" and agents["binh"]["load"] == 1
        await sup.post(
            f"/api/supervisor/conversations/{cid}/assign", {"agent_id": an.principal["id"]}
        )
        await an.console_event("assigned", conversation_id=cid, agent_id=an.principal["id"])

        # Resolve: recorded, and the conversation is no longer with a person.
        await an.post(f"/api/agent/conversations/{cid}/resolve", {"note": "xong"})
        # A reply after the resolve is refused, not delivered after the chat ended.
        with pytest.raises(AgentAPIError) as late:
            await an.post(f"/api/agent/conversations/{cid}/messages",
                          {"text": "còn gì nữa không ạ", "client_msg_id": "late"})  # fmt: skip
        assert late.value.status in (403, 409)
        conv = await wait_for(lambda: _left_agent(g, cid))
        assert conv.state in ("SURVEY", "CLOSED") and conv.resolved_at is not None
        kinds = [e.kind for e in await g.gw.db.escalations(cid)]
        assert kinds == [
            "escalated",
            "claimed",
            "transferred",
            "claimed",
            "transferred",
            "claimed",
            "resolved",
        ]
        me = await an.get("/api/agent/me")
        assert me["load"] == 0 and me["chats"] == []
    finally:
        await customer.close()
        for a in (an, binh, sup):
            await a.close()


async def _left_agent(g: Any, cid: str) -> Any:
    conv = await g.gw.db.get_conversation(cid)
    return conv if conv.state not in ("WITH_AGENT", "WAITING_AGENT") else None


async def test_nobody_online_offers_a_callback(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    g = desk_gateway
    customer = WidgetClient(g.ws_url)
    try:
        await customer.connect()
        await customer.say(ASK_HUMAN)
        await _drain(
            customer, lambda e: e["kind"] == "message" and "số điện thoại" in e["message"]["text"]
        )
        await customer.say("gọi mình số 0912 345 678 nhé")
        await _drain(
            customer, lambda e: e["kind"] == "message" and "0912345678" in e["message"]["text"]
        )
        cid = customer.conversation_id
        callbacks = [e for e in await g.gw.db.escalations(cid) if e.kind == "callback_requested"]
        assert [c.note for c in callbacks] == ["0912345678"]
        # Still in line: a person who comes online later takes it.
        assert await g.gw.desk.queues.position(cid) == ("general", 1)
    finally:
        await customer.close()


async def test_outside_opening_hours_says_so(tmp_path, nlu_url) -> None:  # type: ignore[no-untyped-def]
    from bot.core.settings import OpeningHours

    never = OpeningHours(days=[])  # closed every day
    async with (
        backend_settings("sqlite", tmp_path) as s,
        running_gateway(desk_settings(s, opening_hours=never), nlu_url) as g,
    ):
        customer = WidgetClient(g.ws_url)
        try:
            await customer.connect()
            await customer.say(ASK_HUMAN)
            closed = "ngoài giờ làm việc"
            await _drain(
                customer, lambda e: e["kind"] == "message" and closed in e["message"]["text"]
            )
        finally:
            await customer.close()


async def test_waiting_customers_see_their_place_move(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    g = desk_gateway
    first, second = WidgetClient(g.ws_url), WidgetClient(g.ws_url)
    an = await _agent(g, "an", max_chats=1)
    try:
        for c in (first, second):
            await c.connect()
            await c.say(ASK_HUMAN)
            await _state(c, "WAITING_AGENT")
        await wait_for(lambda: g.gw.desk.queues.position(second.conversation_id))
        assert (await g.gw.desk.queues.position(second.conversation_id))[1] == 2
        await an.online()  # takes the first in line; the second moves up to 1
        await _drain(
            second, lambda e: e == {"kind": "queue", "position": 1, "eta_s": e.get("eta_s")}
        )
        await _state(first, "WITH_AGENT")
    finally:
        for c in (first, second):
            await c.close()
        await an.close()


async def test_card_lists_the_customers_previous_conversations(tmp_path, nlu_url) -> None:  # type: ignore[no-untyped-def]
    async with (
        backend_settings("sqlite", tmp_path, reopen_window_hours=0) as s,
        running_gateway(desk_settings(s), nlu_url) as g,
    ):
        customer = WidgetClient(g.ws_url)
        an = await _agent(g, "an")
        try:
            await customer.connect()
            await customer.say("bảo hành bao lâu vậy shop")
            await customer.bot_reply()
            earlier = customer.conversation_id
            await customer.send_frame({"type": "end"})
            await customer.say("Bỏ qua", payload="survey:skip")  # the survey at close
            await wait_for(lambda: _closed(g, earlier))
            await an.online()
            await customer.say(ASK_HUMAN)  # a new conversation: the old one is past reopening
            cid = (await an.console_event("assigned"))["conversation_id"]
            assert cid != earlier
            card = await an.get(f"/api/agent/conversations/{cid}")
            assert [c["id"] for c in card["previous_conversations"]] == [earlier]
            assert card["previous_conversations"][0]["bot_only"] is True
        finally:
            await customer.close()
            await an.close()


async def _closed(g: Any, cid: str) -> bool:
    conv = await g.gw.db.get_conversation(cid)
    return conv.state == "CLOSED"


async def test_escalation_cut_short_by_a_crash_is_finished(tmp_path, nlu_url) -> None:  # type: ignore[no-untyped-def]
    """The worker dies after the state change but before the chat joins the line: the retry
    (another worker claiming the pending inbox entry) finishes the escalation."""
    async with (
        backend_settings("postgresql", tmp_path, claim_idle_s=1, sweep_every_s=1) as s,
        running_gateway(desk_settings(s), nlu_url) as g,
    ):
        queues = g.gw.desk.queues
        real_enqueue = queues.enqueue
        calls = []

        async def crash_once(*args: Any, **kw: Any) -> Any:
            calls.append(args[0])
            if len(calls) == 1:
                raise ConnectionError("simulated crash between state change and enqueue")
            return await real_enqueue(*args, **kw)

        queues.enqueue = crash_once
        customer = WidgetClient(g.ws_url)
        try:
            await customer.connect()
            await customer.say(ASK_HUMAN)
            await _state(customer, "WAITING_AGENT")
            cid = customer.conversation_id
            # The retry puts it in line and tells the customer their place.
            assert await wait_for(lambda: queues.position(cid), timeout=30) == ("general", 1)
            await _drain(
                customer, lambda e: e["kind"] == "message" and "vị trí số 1" in e["message"]["text"]
            )
            assert await g.gw.desk.sla.deadline(cid) is not None  # the SLA clock runs
            assert [e.kind for e in await g.gw.db.escalations(cid)] == ["escalated"]  # once
            assert len(calls) == 2
        finally:
            await customer.close()


async def test_danger_while_waiting_survives_a_crash_before_the_record(tmp_path, nlu_url) -> None:  # type: ignore[no-untyped-def]
    """The worker dies after the safety words but before the critical escalation is recorded:
    the retry records it and raises the severity, and the customer hears the words once."""
    async with (
        backend_settings("postgresql", tmp_path, claim_idle_s=1, sweep_every_s=1) as s,
        running_gateway(desk_settings(s), nlu_url) as g,
    ):
        db = g.gw.db
        real_add = db.add_escalation
        crashed = []

        async def crash_once(*args: Any, **kw: Any) -> Any:
            if kw.get("severity") == "critical" and not crashed:
                crashed.append(args[0])
                raise ConnectionError("simulated crash between the safety words and the record")
            return await real_add(*args, **kw)

        db.add_escalation = crash_once
        customer = WidgetClient(g.ws_url, locale="en")
        try:
            await customer.connect()
            await customer.say(ASK_HUMAN)
            await _state(customer, "WAITING_AGENT")
            cid = customer.conversation_id
            await customer.say("the charger is smoking and smells like burning plastic")

            async def critical() -> bool:
                return (await db.get_conversation(cid)).severity == "critical"

            await wait_for(critical, timeout=30)
            assert crashed == [cid]  # the crash really happened on the way
            records = [(e.kind, e.severity) for e in await db.escalations(cid)]
            assert records[-1] == ("escalated", "critical")
            assert records.count(("escalated", "critical")) == 1
            safety = [m for m in await db.transcript(cid) if "114" in m.text]
            assert len(safety) == 1 and "unplug" in safety[0].text
        finally:
            await customer.close()


async def test_watching_stops_when_another_agent_takes_the_chat(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    g = desk_gateway
    an = await _agent(g, "an", queues=["general"])
    binh = await _agent(g, "binh", queues=["general"])
    customer = WidgetClient(g.ws_url)
    try:
        await customer.connect()
        await customer.say(ASK_HUMAN)  # nobody online: the chat waits
        cid = (await an.console_event("escalated"))["conversation_id"]
        await an.send({"type": "watch", "conversation_id": cid})  # a look before claiming
        await an.next_frame(lambda f: f["type"] == "watching")
        await binh.online()  # the only one online: the chat is handed to Binh
        gone = await an.next_frame(lambda f: f["type"] == "unwatched")
        assert gone["conversation_id"] == cid
        await binh.console_event("assigned", conversation_id=cid)
        await customer.say("alo, có ai không")
        # An no longer receives this customer's messages.
        with pytest.raises(TimeoutError):
            await an.next_frame(
                lambda f: f["type"] == "event" and f.get("conversation_id") == cid, timeout=3
            )
    finally:
        await customer.close()
        await an.close()
        await binh.close()
