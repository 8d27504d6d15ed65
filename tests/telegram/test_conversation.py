"""Whole conversations over Telegram: python-telegram-bot inside the gateway, the fake Bot
API behind it, the real NLU service, real Redis, SQLite and PostgreSQL."""

from __future__ import annotations

import logging

import pytest

from bot.channels.widget_client import wait_for
from tests.telegram.fake_bot_api import TOKEN
from tests.telegram.harness import Harness

GIBBERISH = ("xqzt vlorp kwy", "zzkq plmx")  # the model cannot place these (see tests/gateway)


async def test_faq_exchange_greets_answers_and_matches_the_transcript(tg: Harness) -> None:
    lan = tg.user(language_code="vi")
    await lan.say(lan.command("/start"))
    (greeting,) = await lan.received(1)
    assert "Chào bạn" in greeting and "/human" in greeting  # Vietnamese, from language_code

    await lan.say(lan.text("bao hanh bao lau vay shop"))
    texts = await lan.received(2)
    assert "bảo hành" in texts[1]

    conv = await tg.conversation_of(lan)
    assert conv.channel == "telegram" and conv.language == "vi" and conv.state == "BOT"
    transcript = await tg.db.transcript(conv.id)
    assert [(m.sender, m.text) for m in transcript][:3] == [
        ("customer", "/start"),
        ("bot", greeting),
        ("customer", "bao hanh bao lau vay shop"),
    ]
    # What the customer received is exactly the stored transcript's outbound side, in order.
    await wait_for(lambda: _all_delivered(tg, conv.id))
    assert tg.fake.texts(lan.chat_id) == await tg.outbound_texts(conv.id)
    assert tg.fake.of("setWebhook")[0].params["secret_token"]  # registered with its secret


async def test_english_speaker_is_greeted_in_english(tg: Harness) -> None:
    joe = tg.user(language_code="en-US", first_name="Joe")
    await joe.say(joe.command("/start"))
    (greeting,) = await joe.received(1)
    assert greeting.startswith("Hi!")
    await joe.say(joe.text("how long is the warranty on a new laptop?"))
    assert "warranty" in (await joe.received(2))[1].lower()


async def test_human_command_escalates_like_the_widget_button(tg: Harness) -> None:
    lan = tg.user()
    await lan.say(lan.command("/human"))
    # The request_human answer, "escalated", "pending", then (nobody is online) the desk's
    # callback offer, which comes from a task of its own, a moment later.
    await lan.received(4)
    conv = await tg.conversation_of(lan)
    assert conv.state == "WAITING_AGENT" and conv.bot_only is False
    (esc,) = await tg.db.escalations(conv.id)
    assert esc.kind == "escalated" and "request_human" in esc.reason
    await wait_for(lambda: _all_delivered(tg, conv.id))
    told = tg.fake.texts(lan.chat_id)
    assert told == await tg.outbound_texts(conv.id)
    assert any("1800 6868" in t for t in told)  # what happens next, honestly
    assert "để lại số điện thoại" in told[3]  # the callback offer
    assert await tg.gateway.gw.desk.queues.position(conv.id) is not None
    assert (await tg.db.transcript(conv.id))[0].text == "Gặp nhân viên"  # the button's title

    # A person takes the chat through the agent API: the customer hears it on Telegram.
    engine = tg.gateway.gw.engine
    await engine.agent_joined(conv.id, "agent-7", "Minh")
    await engine.agent_message(conv.id, "agent-7", "Chào anh/chị, em là Minh ạ.", "c1")
    await engine.agent_note(conv.id, "agent-7", "internal: VIP customer")  # never sent
    texts = await lan.received(len(told) + 2)
    assert "Minh" in texts[-2] and texts[-1] == "Chào anh/chị, em là Minh ạ."
    await lan.say(lan.text("dạ em chào anh"))
    await wait_for(lambda: _all_delivered(tg, conv.id))
    assert tg.fake.texts(lan.chat_id) == await tg.outbound_texts(conv.id)
    assert not any("internal" in t for t in tg.fake.texts(lan.chat_id))


async def test_quick_replies_become_an_inline_keyboard_answered_once(tg: Harness) -> None:
    lan = tg.user()
    await lan.say(lan.text(GIBBERISH[0]))
    await lan.received(1)
    (ask,) = tg.fake.sent(lan.chat_id)
    rows = ask.params["reply_markup"]["inline_keyboard"]
    titles = [row[0]["text"] for row in rows]
    assert "Gặp nhân viên" in titles
    human = titles.index("Gặp nhân viên")

    sent = {
        "message_id": 4242,
        "text": ask.params["text"],
        "reply_markup": {"inline_keyboard": rows},
    }
    await lan.say(lan.press(sent, human))
    await lan.received(4)  # the request_human answer, "escalated", "pending"
    conv = await tg.conversation_of(lan)
    assert conv.state == "WAITING_AGENT"
    await wait_for(lambda: tg.fake.of("answerCallbackQuery"))
    await wait_for(lambda: tg.fake.of("editMessageReplyMarkup"))
    removed = tg.fake.of("editMessageReplyMarkup")[0].params
    assert int(removed["message_id"]) == 4242 and not removed.get("reply_markup")

    # A second tap on the same keyboard (before the buttons vanished) counts once.
    await lan.say(lan.press(sent, human))
    await wait_for(lambda: len(tg.fake.of("answerCallbackQuery")) == 2)
    taps = [m for m in await tg.db.transcript(conv.id) if m.sender == "customer"]
    assert [m.text for m in taps] == [GIBBERISH[0], "Gặp nhân viên"]
    assert taps[1].payload == {"quick_reply": "intent:request_human"}


async def test_forged_button_data_is_ignored(tg: Harness) -> None:
    lan, eve = tg.user(), tg.user()
    await lan.say(lan.text(GIBBERISH[0]))
    await lan.received(1)
    data = tg.fake.sent(lan.chat_id)[0].params["reply_markup"]["inline_keyboard"][0][0]
    # Eve replays Lan's button in her own chat, and invents a payload: neither is accepted.
    for forged in (data["callback_data"], "intent:request_human", "q:1:99", "q:x:0"):
        await eve.say(eve.button(forged, {"message_id": 1}))
    await wait_for(lambda: len(tg.fake.of("answerCallbackQuery")) == 4)  # spinners stopped
    customer = await tg.db.get_or_create_customer("telegram", str(eve.chat_id))
    assert await tg.db.latest_conversation(customer.id) is None  # nothing stored for Eve


async def _all_delivered(tg: Harness, conversation_id: str) -> bool:
    rows = await tg.channel.ledger.deliveries(conversation_id)
    expected = await tg.outbound_texts(conversation_id)
    return len(rows) == len(expected) and all(r.status == "delivered" for r in rows)


async def test_the_bot_token_never_reaches_the_logs(
    tg: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="careline")
    caplog.set_level(logging.INFO)
    lan = tg.user()
    await lan.say(lan.text("giờ mở cửa"))
    await lan.received(1)
    assert TOKEN not in caplog.text and TOKEN.split(":")[1] not in caplog.text


async def test_end_starts_the_survey_answered_by_inline_keyboard(tg: Harness) -> None:
    lan = tg.user()
    await lan.say(lan.text("giờ mở cửa"))
    await lan.received(1)
    await lan.say(lan.command("/end"))
    await lan.received(2)
    question = tg.fake.sent(lan.chat_id)[-1].params
    rows = question["reply_markup"]["inline_keyboard"]
    conv = await tg.conversation_of(lan)
    assert conv.state == "SURVEY"
    offered = (await tg.db.transcript(conv.id))[-1].payload["quick_replies"]
    assert all(q["payload"].startswith("survey:") for q in offered)  # generic keyboard path
    first = next(i for i, q in enumerate(offered) if q["payload"].endswith(":7"))
    sent = {"message_id": 77, "text": question["text"], "reply_markup": question["reply_markup"]}
    assert len(rows) == len(offered)
    await lan.say(lan.press(sent, first))
    await lan.received(3)  # the next question (or the thanks)
    taps = [m for m in await tg.db.transcript(conv.id) if m.sender == "customer"]
    assert taps[-1].payload == {"quick_reply": offered[first]["payload"]}
    assert (await tg.gateway.gw.survey_flow.store.get(conv.id)).ces == 7  # recorded
