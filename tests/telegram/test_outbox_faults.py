"""More ways Telegram fails, through the fake Bot API: a send that timed out on our side but
reached the chat (a bounded duplicate: that one message at most twice, and nothing else
repeated or out of order), "chat not found" (the customer is unreachable; no retrying
forever), 401 (retried until the token works; nothing lost), and several chats through one
outage (each gets its own messages, all of them, in order)."""

from __future__ import annotations

from bot.channels.widget_client import wait_for
from tests.telegram.harness import Harness


async def _answered(tg: Harness, conversation_id: str, n: int) -> bool:
    transcript = await tg.db.transcript(conversation_id)
    return sum(m.sender == "bot" for m in transcript) >= n


async def test_a_send_that_timed_out_but_arrived_repeats_that_message_at_most_once(
    tg: Harness,
) -> None:
    lan = tg.user()
    tg.fake.hang_s = 2.0  # past the sender's 1 s timeout
    tg.fake.fail("sendMessage", "delivered_timeout")
    for text in ("bao hanh bao lau", "giờ mở cửa"):
        await lan.say(lan.text(text))
    conv = await tg.conversation_of(lan)
    await wait_for(lambda: _answered(tg, conv.id, 2), timeout=20)
    expected = await tg.outbound_texts(conv.id)
    await lan.received(len(expected) + 1, timeout=30)  # the repeated one, and the rest
    got = tg.fake.texts(lan.chat_id)
    assert got[0] == got[1] == expected[0]  # the timed-out send, and its retry
    assert got[1:] == expected  # everything else once, in order


async def test_chat_not_found_makes_the_customer_unreachable(tg: Harness) -> None:
    lan = tg.user()
    tg.fake.fail("sendMessage", "chat_not_found")
    await lan.say(lan.text("bao hanh bao lau"))
    conv = await tg.conversation_of(lan)

    async def unreachable() -> bool:
        return (await tg.db.get_customer(conv.customer_id)).unreachable

    await wait_for(unreachable, timeout=15)
    tries = len(tg.fake.attempts)
    await tg.channel.sender.wake(conv.id)
    assert len(tg.fake.attempts) == tries  # not retried
    assert tg.fake.sent(lan.chat_id) == []


async def test_unauthorized_is_retried_until_the_token_works(tg: Harness) -> None:
    lan = tg.user()
    tg.fake.fail("sendMessage", "401", times=3)  # e.g. a token rotated a moment too early
    await lan.say(lan.text("bao hanh bao lau"))
    conv = await tg.conversation_of(lan)
    await wait_for(lambda: _answered(tg, conv.id, 1), timeout=20)
    expected = await tg.outbound_texts(conv.id)
    assert await lan.received(len(expected), timeout=30) == expected
    assert len(tg.fake.attempts) >= 4  # three refusals, then the send


async def test_several_chats_through_one_outage(tg: Harness) -> None:
    users = [tg.user() for _ in range(3)]
    tg.fake.go_down("502")
    for i, u in enumerate(users):
        await u.say(u.text("bao hanh bao lau"))
        await u.say(u.text(f"cho mình hỏi thêm {i}"))
    convs = [await tg.conversation_of(u) for u in users]
    for conv in convs:
        await wait_for(lambda conv=conv: _answered(tg, conv.id, 2), timeout=30)
    assert all(tg.fake.sent(u.chat_id) == [] for u in users)
    tg.fake.recover()
    for u, conv in zip(users, convs, strict=True):
        expected = await tg.outbound_texts(conv.id)
        assert await u.received(len(expected), timeout=30) == expected  # own, all, in order
