"""The webhook route: only Telegram (who knows the secret) gets in, bad bodies are refused with
a clear message, and Telegram's retries are processed once."""

from __future__ import annotations

import asyncio

from bot.channels.widget_client import wait_for
from tests.telegram.harness import Harness


async def _customer_messages(tg: Harness, chat_id: int) -> list[str]:
    customer = await tg.db.get_or_create_customer("telegram", str(chat_id))
    conv = await tg.db.latest_conversation(customer.id)
    if conv is None:
        return []
    return [m.text for m in await tg.db.transcript(conv.id) if m.sender == "customer"]


async def test_forged_webhook_is_rejected_and_stores_nothing(tg: Harness) -> None:
    eve = tg.user()
    update = eve.text("bao hanh bao lau")
    for secret in (None, "", "wrong-secret-0123456789", "test-webhook-secret-012345678"):
        status, body = await tg.post(update, secret=secret)
        assert status == 403 and body["code"] == "forbidden"
    assert await _customer_messages(tg, eve.chat_id) == []
    # The real secret still works for the very same update (it was never marked as seen).
    status, _ = await tg.post(update)
    assert status == 200
    assert await _customer_messages(tg, eve.chat_id) == ["bao hanh bao lau"]


async def test_bad_bodies_get_a_clear_4xx(tg: Harness) -> None:
    cases = {
        b"{not json": (400, "invalid_json"),
        b"[1, 2]": (400, "invalid_update"),
        b'{"message": {}}': (400, "invalid_update"),
        b'{"update_id": "7"}': (400, "invalid_update"),
        b'{"update_id": -1}': (400, "invalid_update"),
    }
    for raw, (status, code) in cases.items():
        got, body = await tg.post(None, raw=raw)
        assert (got, body.get("code")) == (status, code), raw
    too_big, _ = await tg.post(None, raw=b'{"update_id": 1, "pad": "' + b"x" * 200_000 + b'"}')
    assert too_big == 413


async def test_a_retried_update_is_processed_once(tg: Harness) -> None:
    lan = tg.user()
    update = lan.text("cửa hàng mở cửa mấy giờ")
    first, second = await asyncio.gather(tg.post(update), tg.post(update))
    assert sorted([first[0], second[0]]) in ([200, 200], [200, 503])  # 503: "retry later"
    again = await tg.post(update)  # Telegram retrying after a lost 200
    assert again == (200, {"ok": True, "result": "duplicate"})
    await lan.received(1)
    assert await _customer_messages(tg, lan.chat_id) == ["cửa hàng mở cửa mấy giờ"]
    conv = await tg.conversation_of(lan)
    await wait_for(lambda: _answered(tg, conv.id))
    bot_replies = [m for m in await tg.db.transcript(conv.id) if m.sender != "customer"]
    assert len(bot_replies) == 1 and len(tg.fake.sent(lan.chat_id)) == 1


async def test_an_update_whose_message_was_stored_but_not_marked_is_not_doubled(
    tg: Harness,
) -> None:
    """Redis lost the update_id (e.g. restarted): SQL idempotency still stores it once."""
    lan = tg.user()
    update = lan.text("giao hàng mất mấy ngày")
    await lan.say(update)
    await tg.channel.dedup.release(update["update_id"])
    await lan.say(update)
    await lan.received(1)
    assert await _customer_messages(tg, lan.chat_id) == ["giao hàng mất mấy ngày"]


async def _answered(tg: Harness, conversation_id: str) -> bool:
    return all(m.processed_at for m in await tg.db.transcript(conversation_id))


async def test_overlong_text_is_cut_to_what_the_nlu_accepts_and_answered(tg: Harness) -> None:
    lan = tg.user()
    limit = tg.gateway.settings.nlu.max_text_chars
    await lan.say(lan.text("bảo hành bao lâu? " * 200))  # 3,600 chars: Telegram allows 4,096
    assert "12 tháng" in (await lan.received(1))[0]  # answered, not stuck at the NLU's 413
    conv = await tg.conversation_of(lan)
    stored = (await tg.db.transcript(conv.id))[0]
    assert stored.text.startswith("bảo hành bao lâu") and len(stored.text) <= limit


async def test_a_flooding_chat_is_told_once_and_not_stored(tg: Harness) -> None:
    tg.channel.cfg = tg.channel.cfg.model_copy(update={"rate_per_chat_per_minute": 3})
    bot, calm = tg.user(), tg.user()
    results = [(await tg.post(bot.text(f"spam {i}")))[1]["result"] for i in range(6)]
    assert results == ["accepted"] * 3 + ["rate_limited"] * 3  # acknowledged, so no retries
    await wait_for(lambda: any("quá nhanh" in t for t in tg.fake.texts(bot.chat_id)))
    assert sum("quá nhanh" in t for t in tg.fake.texts(bot.chat_id)) == 1  # told once
    assert await _customer_messages(tg, bot.chat_id) == ["spam 0", "spam 1", "spam 2"]
    assert (await tg.post(calm.text("giờ mở cửa")))[1]["result"] == "accepted"  # per chat
