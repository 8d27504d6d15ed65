"""A whole conversation through the widget channel and the engine, on real Redis and on
SQLite and PostgreSQL, with the real NLU service."""

from __future__ import annotations

import socket

import pytest

from bot.channels.widget_client import WidgetClient, wait_for
from nlu.client import NLUClient
from tests.support import backend_settings, running_gateway

# Messages the model cannot place (checked against the live model before use).
GIBBERISH = ("xqzt vlorp kwy", "zzkq plmx")


async def _state_event(c: WidgetClient, state: str) -> None:
    await c.expect(lambda f: f["type"] == "event" and f["event"] == {"kind": "state",
                                                                      "state": state})  # fmt: skip


async def test_full_conversation(gateway, nlu_url: str) -> None:  # type: ignore[no-untyped-def]
    threshold = gateway.settings.conversation.answer_threshold
    async with NLUClient(nlu_url) as nlu:
        for text in GIBBERISH:
            parsed = await nlu.parse(text)
            assert parsed.confidence < threshold or parsed.intent == "nlu_fallback", (
                f"precondition: the model must not be confident about {text!r}: {parsed}"
            )
    db = gateway.gw.db
    c = WidgetClient(gateway.ws_url)
    try:
        welcome = await c.connect()
        assert welcome["conversation_id"] is None and welcome["token"]

        # 1. An FAQ typed without diacritics gets the Vietnamese answer.
        cid = await c.say("bao hanh bao lau vay shop")
        ack = await c.expect(lambda f: f["type"] == "ack")
        assert ack["client_msg_id"] == cid and ack["conversation_id"]
        answer = await c.bot_reply()
        assert "bảo hành" in answer["text"] and answer["sender"] == "bot"

        # 2. A quick-reply choice is answered directly (no NLU guess involved).
        await c.say("Giờ mở cửa", payload="intent:store_hours")
        assert "8:00" in (await c.bot_reply())["text"]

        # 3. A miss: the bot asks instead of guessing, and offers a person.
        await c.say(GIBBERISH[0])
        ask = await c.bot_reply()
        assert "intent:request_human" in [q["payload"] for q in ask["quick_replies"]]

        # 4. A second miss in a row: escalation, recorded, customer told what happens.
        await c.say(GIBBERISH[1])
        await _state_event(c, "WAITING_AGENT")
        told = await c.bot_reply()
        assert told["sender"] == "system" and "nhân viên" in told["text"].lower()
        pending = await c.bot_reply()
        assert pending["sender"] == "system" and "1800 6868" in pending["text"]  # hotline
        assert "vị trí số 1 trong hàng chờ" in pending["text"]  # first in line
        # Nobody is online: right after the escalation the desk (on its own task, once the
        # conversation's lock is free) says so honestly and offers a call back.
        offer = await c.bot_reply()
        assert offer["sender"] == "system" and "gọi lại" in offer["text"]
        assert await gateway.gw.desk.queues.position(c.conversation_id) == ("general", 1)

        conv = await db.get_conversation(c.conversation_id)
        assert conv.state == "WAITING_AGENT" and conv.bot_only is False
        assert conv.escalated_at is not None
        (esc,) = await db.escalations(conv.id)
        assert esc.kind == "escalated" and "did not understand 2 messages" in esc.reason

        # 5. While waiting for a person the bot stays quiet; the message is still stored.
        quiet = await c.say("alo có ai không")
        await c.expect(lambda f: f["type"] == "ack" and f["client_msg_id"] == quiet)
        await wait_for(lambda: _processed_all(db, conv.id))
        transcript = await db.transcript(conv.id)
        assert transcript[-1].text == "alo có ai không" and transcript[-1].sender == "customer"

        # 6. The customer ends the chat: the survey starts (it left the line at once); they
        # skip it and the chat closes; writing again reopens the same conversation.
        await c.send_frame({"type": "end"})
        question = await c.bot_reply()
        await _state_event(c, "SURVEY")
        assert await gateway.gw.desk.queues.position(conv.id) is None  # left the line
        assert "survey:skip" in [q["payload"] for q in question["quick_replies"]]
        await c.say("Bỏ qua", payload="survey:skip")
        await _state_event(c, "CLOSED")
        await c.say("cho mình hỏi thêm giờ mở cửa")
        await _state_event(c, "BOT")
        reopened = await db.get_conversation(conv.id)
        assert reopened.reopen_count == 1 and reopened.state == "BOT"

        # Everything the customer saw is exactly the stored transcript, in order.
        await c.bot_reply()
        stored = [(m.id, m.sender, m.text) for m in await db.transcript(conv.id)]
        seen = [(m["id"], m["sender"], m["text"]) for m in c.messages()]
        assert seen == stored
    finally:
        await c.close()


async def _processed_all(db, conversation_id: str) -> bool:  # type: ignore[no-untyped-def]
    return all(m.processed_at for m in await db.transcript(conversation_id)
               if m.sender == "customer")  # fmt: skip


async def test_english_customer_gets_english_answers(gateway) -> None:  # type: ignore[no-untyped-def]
    c = WidgetClient(gateway.ws_url, locale="en")
    try:
        await c.connect()
        await c.say("how long is the warranty on a new laptop?")
        assert "warranty" in (await c.bot_reply())["text"].lower()
        conv = await gateway.gw.db.get_conversation(c.conversation_id)
        assert conv.language == "en"
    finally:
        await c.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_nlu_down_hands_over_honestly(backend: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as held:  # bound but not listening: refused, and no one else's
        held.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{held.getsockname()[1]}"
        await _nlu_down_hands_over(backend, tmp_path, dead)


async def _nlu_down_hands_over(backend: str, tmp_path, dead: str) -> None:  # type: ignore[no-untyped-def]
    async with backend_settings(backend, tmp_path) as s, running_gateway(s, dead) as g:
        c = WidgetClient(g.ws_url)
        try:
            await c.connect()
            await c.say("máy tôi không lên nguồn")
            sorry = await c.bot_reply()
            assert "trục trặc" in sorry["text"]  # the nlu_unavailable line
            await _state_event(c, "WAITING_AGENT")
            (esc,) = await g.gw.db.escalations(c.conversation_id)
            assert "assistant is unavailable" in esc.reason
        finally:
            await c.close()


async def test_hazard_gets_safety_instructions_then_the_safety_queue(gateway) -> None:  # type: ignore[no-untyped-def]
    db = gateway.gw.db
    c = WidgetClient(gateway.ws_url)
    try:
        await c.connect()
        await c.say("pin dt bi phong r shop oi")  # no diacritics, chat abbreviations
        first = await c.bot_reply()
        assert "sạc" in first["text"] and ("114" in first["text"] or "không cháy" in first["text"])
        await _state_event(c, "WAITING_AGENT")
        conv = await db.get_conversation(c.conversation_id)
        assert (conv.severity, conv.queue) == ("critical", "safety")
        (esc,) = await db.escalations(conv.id)
        assert esc.severity == "critical" and esc.queue == "safety"
        # The state event goes out before the chat joins the line: wait for it.
        queues = gateway.gw.desk.queues
        assert await wait_for(lambda: queues.position(conv.id)) == ("safety", 1)
        assert "phong" in esc.reason or "swollen" in esc.reason.lower()  # why, for the agent
        parts = esc.reason.split("; ")
        assert len(parts) == len(set(parts)), f"reasons repeated: {esc.reason}"
    finally:
        await c.close()


async def test_danger_revealed_while_waiting_for_a_person(gateway) -> None:  # type: ignore[no-untyped-def]
    db = gateway.gw.db
    c = WidgetClient(gateway.ws_url, locale="en")
    try:
        await c.connect()
        await c.say("I want to talk to a real person please")
        await _state_event(c, "WAITING_AGENT")
        conv = await db.get_conversation(c.conversation_id)
        assert conv.severity != "critical"
        await c.say("oh no the charger is smoking now and smells like burning plastic")
        safety = await c.expect(
            lambda f: f["type"] == "event" and f["event"]["kind"] == "message"
            and f["event"]["message"]["sender"] == "system"
            and "114" in f["event"]["message"]["text"]
        )  # fmt: skip
        assert "unplug" in safety["event"]["message"]["text"]
        # The customer is told first; the record and the severity follow, severity last.
        await wait_for(lambda: _severity_is(db, conv.id, "critical"))
        conv = await db.get_conversation(conv.id)
        assert conv.state == "WAITING_AGENT"
        (waiting,) = await gateway.gw.desk.queues.waiting(conv.queue, 10)
        assert waiting.severity == "critical"  # moved up the line
        assert [e.severity for e in await db.escalations(conv.id)][-1] == "critical"
    finally:
        await c.close()


async def _severity_is(db, conversation_id: str, severity: str) -> bool:  # type: ignore[no-untyped-def]
    return (await db.get_conversation(conversation_id)).severity == severity
