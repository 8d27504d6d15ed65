"""Starting the channel: polling mode (development), where PTB's updater fetches updates from
the (fake) Bot API and they take the same path as webhook updates, turned on by
`careline run --telegram-polling`; and a Telegram outage at startup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.channels.telegram.credentials import SECRET_ENV, TOKEN_ENV
from bot.channels.widget_client import wait_for
from nlu.process import free_port
from tests.support import BACKENDS, REDIS_URL, backend_settings, running_gateway
from tests.telegram.fake_bot_api import TOKEN, FakeBotAPI
from tests.telegram.harness import (
    SECRET,
    Harness,
    TelegramUser,
    telegram_gateway,
    telegram_settings,
)

CARELINE = str(Path(sys.executable).parent / "careline")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_polling_mode_answers_like_the_webhook(
    backend: str, tmp_path: Path, nlu_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with telegram_gateway(backend, tmp_path, nlu_url, monkeypatch, mode="polling") as tg:
        # polling and a webhook cannot coexist (the updater starts in the background)
        assert await wait_for(lambda: tg.fake.of("deleteWebhook"))
        lan = tg.user()
        start = lan.command("/start")
        tg.fake.updates.extend([start, lan.text("bao hanh bao lau"), start])  # one repeated
        texts = await lan.received(2)
        assert "Chào bạn" in texts[0] and "bảo hành" in texts[1]
        conv = await tg.conversation_of(lan)
        stored = [m.text for m in await tg.db.transcript(conv.id) if m.sender == "customer"]
        assert stored == ["/start", "bao hanh bao lau"]
        status, _ = await tg.post(lan.text("x"))
        assert status == 404  # no webhook route in polling mode


async def test_careline_run_telegram_polling(tmp_path: Path, nlu_url: str) -> None:
    fake = await FakeBotAPI().start()
    env = {
        **os.environ,
        TOKEN_ENV: TOKEN,
        "NLU_URL": nlu_url,
        "REDIS_URL": REDIS_URL,
        "CARELINE_REDIS_PREFIX": f"tpoll{os.getpid()}",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
        "CARELINE__TELEGRAM__API_BASE_URL": fake.url,
    }
    env.pop(SECRET_ENV, None)
    log = tmp_path / "run.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([CARELINE, "run", "--telegram-polling", "--port", str(free_port())],
                                env=env, stdout=fh,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        await wait_for(lambda: "polling (development)" in log.read_text() or proc.poll(), 60)
        assert proc.poll() is None, log.read_text()[-2000:]
        user = TelegramUser(harness=None)  # type: ignore[arg-type]
        fake.updates.append(user.text("giờ mở cửa"))
        await wait_for(lambda: fake.texts(user.chat_id), timeout=30)
        assert "8:00" in fake.texts(user.chat_id)[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        await fake.close()


async def test_telegram_down_at_startup_delays_the_channel_not_the_gateway(
    tmp_path: Path, nlu_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = await FakeBotAPI().start()
    fake.fail("getMe", "502")  # Telegram unreachable at first
    fake.fail("setWebhook", "400")  # then refuses the webhook once (e.g. not https)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    try:
        async with (
            backend_settings("sqlite", tmp_path) as s,
            running_gateway(telegram_settings(s, fake.url), nlu_url) as g,
            aiohttp.ClientSession() as http,
        ):
            async with http.get(g.url + "/readyz") as r:
                assert r.status == 200  # the gateway serves the widget meanwhile
            await wait_for(lambda: g.gw.telegram.ready.is_set(), timeout=30)
            assert len(fake.of("setWebhook")) == 1  # the retry that succeeded
            assert "telegram refused the webhook" in caplog.text
            lan = Harness(g, fake, http).user()
            await lan.say(lan.text("giờ mở cửa"))
            assert "8:00" in (await lan.received(1))[0]
    finally:
        await fake.close()
