"""Two gateway replicas share Redis and SQL: Telegram updates land on either, both senders
consume the same outbox, and every chat still gets each message once, in order."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import aiohttp
import pytest

from bot.channels.telegram.credentials import SECRET_ENV, TOKEN_ENV
from bot.channels.widget_client import wait_for
from tests.support import BACKENDS, backend_settings, running_gateway
from tests.telegram.fake_bot_api import TOKEN, FakeBotAPI
from tests.telegram.harness import SECRET, Harness, telegram_settings

FAQS = ("bao hanh bao lau", "giờ mở cửa", "có trả góp không", "giao hàng mất mấy ngày")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_two_replicas_deliver_every_message_once_in_order(
    backend: str, tmp_path: Path, nlu_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = await FakeBotAPI().start()
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    try:
        async with (
            backend_settings(backend, tmp_path) as s,
            running_gateway(telegram_settings(s, fake.url), nlu_url) as a,
            running_gateway(telegram_settings(s, fake.url), nlu_url) as b,
            aiohttp.ClientSession() as http,
        ):
            for g in (a, b):
                await wait_for(lambda g=g: g.gw.telegram.ready.is_set())
            replicas = [Harness(a, fake, http), Harness(b, fake, http)]
            users = [replicas[0].user() for _ in range(4)]
            turn = itertools.cycle(replicas)
            fake.fail("sendMessage", "500", times=3)  # a few failures on the way, too
            for text in FAQS:  # each chat's messages alternate between the replicas
                await asyncio.gather(*(next(turn).post(u.text(text)) for u in users))
            # A Telegram retry of an update lands on the *other* replica: still once.
            again = users[0].text("cảm ơn shop")
            assert (await replicas[0].post(again))[0] == 200
            assert (await replicas[1].post(again))[1]["result"] == "duplicate"

            db = a.gw.db
            for u in users:
                conv = await replicas[0].conversation_of(u)
                sent = len(FAQS) + (1 if u is users[0] else 0)
                await wait_for(lambda c=conv.id, n=sent: _answered(db, c, n), timeout=40)
                expected = await replicas[0].outbound_texts(conv.id)
                n = len(expected)
                await wait_for(lambda c=u.chat_id, n=n: len(fake.texts(c)) >= n, timeout=40)
                assert fake.texts(u.chat_id) == expected  # once each, in order
            used = {c.params.get("chat_id") for c in fake.of("sendMessage")}
            assert used == {str(u.chat_id) for u in users}
    finally:
        await fake.close()


async def _answered(db: object, conversation_id: str, customer_messages: int) -> bool:
    transcript = await db.transcript(conversation_id)  # type: ignore[attr-defined]
    mine = [m for m in transcript if m.sender == "customer"]
    return len(mine) == customer_messages and all(m.processed_at for m in transcript)
