"""Outbound reliability: an outage delays messages but loses none and keeps their order,
RetryAfter is honoured, a blocked bot stops retrying, long replies are split, and wake-ups
lost with a crash or a Redis restart are recovered."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from bot.channels.telegram.split import utf16_len
from bot.channels.widget_client import wait_for
from tests.support import BACKENDS
from tests.telegram.harness import Harness, telegram_gateway

FAQS = ("bao hanh bao lau", "cửa hàng mở cửa mấy giờ", "có trả góp không shop")


async def _agent_says(tg: Harness, conversation_id: str, text: str, *, wake: bool = True) -> int:
    """An agent reply through the engine's agent API; wake=False stores it the same way but
    as if the outbox wake-up had been lost."""
    if wake:
        conv = await tg.db.get_conversation(conversation_id)
        if conv.state != "WITH_AGENT":  # setup: the chat is with agent-7 (the engine checks)
            await tg.db.update_conversation(conversation_id, state="WITH_AGENT", agent_id="agent-7")
        msg, _ = await tg.gateway.gw.engine.agent_message(
            conversation_id, "agent-7", text, client_msg_id=uuid.uuid4().hex
        )
    else:
        msg, _ = await tg.db.add_message(conversation_id, "agent", text, sender_id="agent-7")
    return int(msg.id)


async def _count(rows: Any, n: int) -> bool:
    return len(await rows) >= n


async def _bot_answered(tg: Harness, conversation_id: str, n: int) -> bool:
    transcript = await tg.db.transcript(conversation_id)
    return sum(m.sender == "bot" for m in transcript) >= n


@pytest.mark.parametrize("outage", ["500", "timeout"])
async def test_outage_queues_messages_then_all_arrive_in_order(tg: Harness, outage: str) -> None:
    lan = tg.user()
    tg.fake.hang_s = 2.0  # past the client's 1 s timeout
    tg.fake.go_down(outage)
    for text in FAQS:
        await lan.say(lan.text(text))  # accepted while Telegram is down
    conv = await tg.conversation_of(lan)
    await wait_for(lambda: _bot_answered(tg, conv.id, len(FAQS)), timeout=20)
    for i in range(5):
        await _agent_says(tg, conv.id, f"agent line {i}")
    await wait_for(lambda: len(tg.fake.attempts) >= 3, timeout=20)  # it kept trying
    assert tg.fake.sent(lan.chat_id) == []

    tg.fake.recover()
    expected = await tg.outbound_texts(conv.id)
    assert len(expected) == len(FAQS) + 5
    assert await lan.received(len(expected), timeout=30) == expected  # all, in order, once

    async def recorded() -> list[str]:
        return [r.status for r in await tg.channel.ledger.deliveries(conv.id)]

    await wait_for(lambda: _count(recorded(), len(expected)))
    assert await recorded() == ["delivered"] * len(expected)


async def test_retry_after_is_honoured(tg: Harness) -> None:
    lan = tg.user()
    tg.fake.fail("sendMessage", "429", retry_after=2)
    await lan.say(lan.text("giờ mở cửa"))
    await lan.received(1)
    refused, accepted = [a for a in tg.fake.attempts if a.params["chat_id"] == str(lan.chat_id)]
    assert accepted.at - refused.at >= 1.9  # not before Telegram allowed (clock tolerance)


async def test_blocked_bot_marks_the_customer_unreachable_and_stops(tg: Harness) -> None:
    lan = tg.user()
    tg.fake.blocked.add(str(lan.chat_id))
    await lan.say(lan.text("bao hanh bao lau"))
    conv = await tg.conversation_of(lan)

    async def unreachable() -> bool:
        return (await tg.db.get_customer(conv.customer_id)).unreachable

    await wait_for(unreachable)
    tries = len(tg.fake.attempts)
    await _agent_says(tg, conv.id, "are you still there?", wake=False)
    await tg.channel.sender.wake(conv.id)  # a wake-up now finds an unreachable customer
    assert len(tg.fake.attempts) == tries  # no retrying forever
    assert await tg.channel.ledger.lagging_conversations(settled_s=0) == []

    # They unblock the bot and write again: the backlog and the new answer arrive, in order.
    tg.fake.blocked.clear()
    await lan.say(lan.text("giờ mở cửa"))
    await wait_for(lambda: _bot_answered(tg, conv.id, 2))
    expected = await tg.outbound_texts(conv.id)
    assert await lan.received(len(expected)) == expected
    assert not await unreachable()


async def test_long_agent_reply_is_split_at_4096_characters(tg: Harness) -> None:
    lan = tg.user()
    await lan.say(lan.text("giờ mở cửa"))
    await lan.received(1)
    conv = await tg.conversation_of(lan)
    paragraphs = [f"Bước {i}: " + ("kiểm tra pin và cáp sạc 🔋 " * 40).strip() for i in range(12)]
    long = "\n\n".join(paragraphs)
    assert len(long) > 3 * 4096
    # The part holding step 4 fails once: the retry sends what is left, not everything again.
    tg.fake.fail("sendMessage", "500", when=lambda p: "Bước 4:" in p.get("text", ""))
    await _agent_says(tg, conv.id, long)
    await wait_for(lambda: "Bước 11:" in tg.fake.texts(lan.chat_id)[-1])
    parts = tg.fake.texts(lan.chat_id)[1:]
    assert len(parts) >= 4 and all(utf16_len(p) <= 4096 for p in parts)
    assert "\n\n".join(parts) == long  # cut at paragraph breaks, nothing lost or repeated
    assert len([a for a in tg.fake.attempts if "Bước 4:" in a.params["text"]]) == 2


async def test_photo_is_stored_for_the_agent_and_acknowledged(tg: Harness) -> None:
    lan = tg.user()
    await lan.say(lan.photo())
    (ack,) = await lan.received(1)
    assert "ảnh" in ack and "mô tả" in ack
    conv = await tg.conversation_of(lan)
    photo = (await tg.db.transcript(conv.id))[0]
    assert photo.sender == "customer" and photo.text == "[photo]"
    attachment = photo.payload["attachment"]
    assert attachment["kind"] == "photo" and attachment["file_id"] == "AgACAgBIG"  # largest
    assert (attachment["width"], attachment["file_size"]) == (1280, 181_234)

    await lan.say(lan.sticker())
    assert "nhãn dán" in (await lan.received(2))[1]


async def test_photo_of_a_swollen_battery_goes_to_the_safety_queue(tg: Harness) -> None:
    lan = tg.user()
    await lan.say(lan.photo(caption="pin điện thoại bị phồng lên rồi shop ơi"))
    texts = await lan.received(3)
    assert "114" in texts[0]  # safety instructions first
    conv = await tg.conversation_of(lan)
    assert (conv.state, conv.severity, conv.queue) == ("WAITING_AGENT", "critical", "safety")
    first = (await tg.db.transcript(conv.id))[0]
    assert first.payload["attachment"]["kind"] == "photo"  # the agent sees the photo


async def test_commands_help_and_lang(tg: Harness) -> None:
    lan = tg.user(language_code=None)
    await lan.say(lan.command("/help"))
    assert (
        "/human" in (await lan.received(1))[0]
        and "Hotline 1800 6868" in tg.fake.texts(lan.chat_id)[0]
    )
    await lan.say(lan.command("/lang en"))
    assert (await lan.received(2))[1] == "Switched to English."
    conv = await tg.conversation_of(lan)
    assert conv.language == "en"
    customer = await tg.db.get_customer(conv.customer_id)
    assert customer.language == "en"
    await lan.say(lan.command("/help"))
    assert (await lan.received(3))[2].startswith("Just type your question")
    await lan.say(lan.command("/lang fr"))
    assert "/lang en" in (await lan.received(4))[3]
    await lan.say(lan.command("/unknown"))
    assert (await lan.received(5))[4].startswith("Just type")  # unknown command: help
    stored = [m.text for m in await tg.db.transcript(conv.id) if m.sender == "customer"]
    assert stored == ["/help", "/lang en", "/help", "/lang fr", "/unknown"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_lost_wake_up_is_found_by_the_sweep(
    backend: str, tmp_path: Path, nlu_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with telegram_gateway(
        backend, tmp_path, nlu_url, monkeypatch, sweep_every_s=0.3, sweep_settle_s=0.2
    ) as tg:
        lan = tg.user()
        await lan.say(lan.text("giờ mở cửa"))
        await lan.received(1)
        conv = await tg.conversation_of(lan)
        await _agent_says(tg, conv.id, "wake-up lost on the way", wake=False)
        assert (await lan.received(2))[1] == "wake-up lost on the way"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_dead_replicas_delivery_is_claimed(
    backend: str, tmp_path: Path, nlu_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with telegram_gateway(
        backend, tmp_path, nlu_url, monkeypatch, claim_idle_s=0.3, sweep_every_s=3600
    ) as tg:
        lan = tg.user()
        await lan.say(lan.text("giờ mở cửa"))
        await lan.received(1)
        conv = await tg.conversation_of(lan)
        await _agent_says(tg, conv.id, "taken over from a dead replica", wake=False)
        # A replica read the wake-up and died before delivering (never acknowledged it).
        outbound, redis = tg.gateway.gw.outbound, tg.gateway.gw.redis.client
        stream = outbound.outbox("telegram")
        async with redis.pipeline(transaction=True) as pipe:  # atomic: nobody else reads it
            pipe.xadd(stream, {"conversation_id": conv.id})
            pipe.xreadgroup("telegram", "dead-replica", {stream: ">"}, count=1000)
            _, got = await pipe.execute()
        assert any(f["conversation_id"] == conv.id for _, entries in got for _, f in entries)
        assert (await lan.received(2))[1] == "taken over from a dead replica"
