"""A gateway with the Telegram channel on, talking to the fake Bot API, plus a simulated
Telegram user who sends updates to the webhook the way Telegram does."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.channels.telegram.channel import SECRET_HEADER
from bot.channels.telegram.credentials import SECRET_ENV, TOKEN_ENV
from bot.channels.widget_client import wait_for
from bot.core.settings import OpeningHours, Settings
from tests.support import RunningGateway, backend_settings, running_gateway, with_section
from tests.telegram.fake_bot_api import TOKEN, FakeBotAPI

SECRET = "test-webhook-secret-0123456789"
_update_ids = itertools.count(10_000)
_message_ids = itertools.count(1)
_chat_ids = itertools.count(900_000_001)


def telegram_settings(s: Settings, api_url: str, mode: str = "webhook", **outbox: Any) -> Settings:
    """The channel against the fake (webhook mode unless told), with quick retries."""
    quick = {"retry_base_s": 0.05, "retry_max_s": 0.4, "poll_s": 0.05, "send_timeout_s": 1.0,
             "claim_idle_s": 5.0, "sweep_every_s": 0.5, "sweep_settle_s": 0.5}  # fmt: skip
    quick.update(outbox)
    t = s.telegram.model_copy(
        update={
            "mode": mode,
            "api_base_url": api_url,
            "outbox": s.telegram.outbox.model_copy(update=quick),
        }
    )
    # People are always "open" here: opening hours are the help desk's tests' business.
    always = OpeningHours(start="00:00", end="24:00")
    return with_section(s.model_copy(update={"telegram": t}), "handoff", opening_hours=always)


@dataclass
class TelegramUser:
    """One private chat, sending what a real Telegram client would."""

    harness: Harness
    language_code: str | None = "vi"
    first_name: str = "Lan"
    chat_id: int = field(default_factory=lambda: next(_chat_ids))

    def _from(self) -> dict[str, Any]:
        user = {"id": self.chat_id, "is_bot": False, "first_name": self.first_name}
        if self.language_code:
            user["language_code"] = self.language_code
        return user

    def _message(self, **content: Any) -> dict[str, Any]:
        return {
            "update_id": next(_update_ids),
            "message": {
                "message_id": next(_message_ids),
                "date": int(time.time()),
                "chat": {"id": self.chat_id, "type": "private", "first_name": self.first_name},
                "from": self._from(),
                **content,
            },
        }

    def text(self, text: str) -> dict[str, Any]:
        return self._message(text=text)

    def command(self, text: str) -> dict[str, Any]:
        name = text.split()[0]
        entity = {"type": "bot_command", "offset": 0, "length": len(name)}
        return self._message(text=text, entities=[entity])

    def photo(self, caption: str | None = None) -> dict[str, Any]:
        sizes = [
            {"file_id": f"small-{i}", "file_unique_id": f"us{i}", "width": 90, "height": 90}
            for i in range(1)
        ] + [{"file_id": "AgACAgBIG", "file_unique_id": "uBIG", "width": 1280, "height": 960,
              "file_size": 181_234}]  # fmt: skip
        content: dict[str, Any] = {"photo": sizes}
        if caption:
            content["caption"] = caption
        return self._message(**content)

    def sticker(self) -> dict[str, Any]:
        sticker = {"file_id": "CAACStk", "file_unique_id": "uStk", "width": 512, "height": 512,
                   "is_animated": False, "is_video": False, "type": "regular"}  # fmt: skip
        return self._message(sticker=sticker)

    def press(self, sent: dict[str, Any], button: int) -> dict[str, Any]:
        """Tap button number `button` of a message the bot sent (a fake API result)."""
        rows = sent["reply_markup"]["inline_keyboard"]
        data = rows[button][0]["callback_data"]
        return self.button(data, sent)

    def button(self, data: str, sent: dict[str, Any]) -> dict[str, Any]:
        return {
            "update_id": next(_update_ids),
            "callback_query": {
                "id": f"cb{next(_update_ids)}",
                "from": self._from(),
                "chat_instance": f"ci{self.chat_id}",
                "data": data,
                "message": {
                    "message_id": sent.get("message_id", 1),
                    "date": int(time.time()),
                    "chat": {"id": self.chat_id, "type": "private"},
                    "text": sent.get("text", ""),
                },
            },
        }

    async def say(self, update: dict[str, Any]) -> int:
        status, _ = await self.harness.post(update)
        assert status == 200, f"webhook answered {status}"
        return status

    async def received(self, n: int, timeout: float = 15) -> list[str]:
        """Wait until the chat has received at least n messages; all texts so far."""
        await wait_for(lambda: len(self.harness.fake.texts(self.chat_id)) >= n, timeout=timeout)
        return self.harness.fake.texts(self.chat_id)


@dataclass
class Harness:
    gateway: RunningGateway
    fake: FakeBotAPI
    http: aiohttp.ClientSession

    @property
    def webhook_url(self) -> str:
        return self.gateway.url + self.gateway.settings.telegram.webhook_path

    @property
    def channel(self) -> Any:
        return self.gateway.gw.telegram

    @property
    def db(self) -> Any:
        return self.gateway.gw.db

    def user(self, **kw: Any) -> TelegramUser:
        return TelegramUser(self, **kw)

    async def post(
        self, update: Any, *, secret: str | None = SECRET, raw: bytes | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        body = raw if raw is not None else _json(update)
        async with self.http.post(self.webhook_url, data=body, headers=headers) as r:
            try:
                payload = await r.json(content_type=None)
            except ValueError:
                payload = {}
            return r.status, payload or {}

    async def conversation_of(self, user: TelegramUser) -> Any:
        customer = await self.db.get_or_create_customer("telegram", str(user.chat_id))
        return await self.db.latest_conversation(customer.id)

    async def outbound_texts(self, conversation_id: str) -> list[str]:
        """What the transcript says the customer should have received, in order."""
        return [m.text for m in await self.db.transcript(conversation_id)
                if m.sender in ("bot", "agent", "system")]  # fmt: skip


def _json(value: Any) -> bytes:
    import json

    return json.dumps(value, ensure_ascii=False).encode()


@asynccontextmanager
async def telegram_gateway(
    backend: str,
    tmp_path: Path,
    nlu_url: str,
    monkeypatch: pytest.MonkeyPatch,
    mode: str = "webhook",
    adjust: Callable[[Settings], Settings] | None = None,
    **outbox: Any,
) -> AsyncIterator[Harness]:
    fake = await FakeBotAPI().start()
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    try:
        async with (
            backend_settings(backend, tmp_path) as s,
            running_gateway(
                (adjust or (lambda x: x))(telegram_settings(s, fake.url, mode, **outbox)), nlu_url
            ) as g,
            aiohttp.ClientSession() as http,
        ):
            await wait_for(lambda: g.gw.telegram.ready.is_set(), timeout=15)
            yield Harness(g, fake, http)
    finally:
        await fake.close()
