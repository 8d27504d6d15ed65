"""The Telegram channel: python-telegram-bot's Application inside our aiohttp gateway.

Inbound: Telegram posts updates to our webhook route (or, in development, PTB's updater polls
for them). Each update is checked (secret token, shape), deduplicated by update_id, and fed to
PTB's Application, whose handlers turn it into an `InboundMessage` for the conversation engine,
exactly like the widget does. The webhook answers 200 only once the message is stored in SQL,
so Telegram keeps retrying anything a crash interrupted.

Outbound: nothing here sends replies directly; every stored message goes through the core's
transcript writer and the Telegram outbox (sender.py). Only the ephemeral bits of a button press
(answering the callback query, removing the used keyboard) are sent from here, best effort.

The channel is one class in three modules: handlers.py (PTB's handlers, the base),
webhook.py (updates in, flood control) and this one (starting, polling, stopping).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from telegram import Update
from telegram.error import BadRequest, InvalidToken, TelegramError

from bot.channels.services import LiveServices
from bot.channels.telegram.credentials import TOKEN_ENV, TelegramCredentials
from bot.channels.telegram.handlers import ALLOWED_UPDATES, SECRET_HEADER, log
from bot.channels.telegram.sender import CHANNEL
from bot.channels.telegram.texts import TelegramTexts
from bot.channels.telegram.webhook import Result, TelegramInbound
from bot.conversation.ports import ChannelInbound
from bot.core.settings import Settings
from bot.core.store.db import Database

__all__ = ["SECRET_HEADER", "Result", "TelegramChannel", "start_telegram"]


class TelegramChannel(TelegramInbound):
    async def start(self) -> None:
        """Register for outbound wake-ups and connect in the background: a Telegram outage at
        startup delays the channel, it does not stop the gateway."""
        # httpx logs every request URL at INFO, and Bot API URLs contain the bot token.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self.live.outbound.register(CHANNEL)
        self._spawn(self._connect(), "telegram-connect")
        self._sender_task = asyncio.create_task(self.sender.run(), name="telegram-sender")

    async def stop(self) -> None:
        await self.sender.stop(self._sender_task)
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.app.updater is not None and self.app.updater.running:
            with contextlib.suppress(Exception):
                await self.app.updater.stop()
        with contextlib.suppress(Exception):
            await self.app.shutdown()

    async def _connect(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.app.initialize()  # getMe: checks the token
                if self.cfg.mode == "webhook" and self.cfg.set_webhook:
                    await self.bot.set_webhook(
                        url=self.public_url + self.cfg.webhook_path,
                        secret_token=self.credentials.secret,
                        allowed_updates=ALLOWED_UPDATES,
                    )
                    log.info("telegram webhook set to %s", self.public_url + self.cfg.webhook_path)
                break
            except InvalidToken:
                log.error("telegram rejected %s (revoked or wrong token); retrying", TOKEN_ENV)
            except BadRequest as e:  # e.g. "bad webhook: HTTPS url must be provided"
                log.error(
                    "telegram refused the webhook %s (%s): set careline.telegram.public_base_url "
                    "to the public https:// address of this gateway; retrying",
                    self.public_url + self.cfg.webhook_path,
                    e,
                )
            except TelegramError as e:
                log.warning("telegram not reachable yet (%s); retrying in %.0f s", e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)
        log.info("telegram bot @%s ready (%s mode)", self.bot.username, self.cfg.mode)
        self.ready.set()
        if self.cfg.mode == "polling":
            await self._poll()

    async def _poll(self) -> None:
        """Development mode: PTB's updater long-polls (after deleting any webhook); updates go
        through the same path as webhook ones. A failed update is retried a few times here,
        since the updater has already confirmed it to Telegram."""
        assert self.app.updater is not None
        await self.app.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
        while True:
            update = await self.app.update_queue.get()
            if not isinstance(update, Update):
                continue
            for attempt in range(5):
                if await self.process(update) in (Result.ACCEPTED, Result.DUPLICATE):
                    break
                await asyncio.sleep(0.5 * 2**attempt)
            else:
                log.error("gave up on telegram update %s", update.update_id)


async def start_telegram(
    settings: Settings,
    inbound: ChannelInbound,
    live: LiveServices,
    db: Database,
    *,
    public_url: str,
    replica: str,
    env: Mapping[str, str],
) -> TelegramChannel | None:
    """The running channel, or None when careline.telegram.mode is off."""
    if settings.telegram.mode == "off":
        return None
    credentials = TelegramCredentials.from_env(env, settings.telegram)
    texts = await asyncio.to_thread(
        TelegramTexts.load, settings.path(settings.telegram.texts), settings.business.placeholders()
    )
    channel = TelegramChannel(
        settings=settings,
        inbound=inbound,
        live=live,
        db=db,
        credentials=credentials,
        texts=texts,
        public_url=public_url,
        replica=replica,
    )
    await channel.start()
    return channel
