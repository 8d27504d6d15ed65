"""Updates in: the webhook route (secret token, shape, dedup by update_id) and per-chat
flood control, feeding PTB's Application. The route answers 200 only once the message is
stored in SQL, so Telegram keeps retrying anything a crash interrupted.
"""

from __future__ import annotations

import hmac
import json
from enum import StrEnum

from aiohttp import web
from telegram import Update

from bot.channels.telegram.content import language_of
from bot.channels.telegram.dedup import Claim
from bot.channels.telegram.handlers import (
    SECRET_HEADER,
    TelegramHandlers,
    error_response,
    log,
    quietly,
)
from bot.channels.telegram.metrics import TELEGRAM_UPDATES
from bot.channels.telegram.sender import CHANNEL
from bot.core.live.ratelimit import rate_window


class Result(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    RATE_LIMITED = "rate_limited"
    BUSY = "busy"
    FAILED = "failed"


class TelegramInbound(TelegramHandlers):
    async def handle_webhook(self, request: web.Request) -> web.Response:
        """POST from Telegram. 200 only once the update's message is stored."""
        given = request.headers.get(SECRET_HEADER, "")
        expected = self.credentials.secret or ""
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            TELEGRAM_UPDATES.labels("forged").inc()
            log.warning(
                "rejected a webhook call without the right secret token",
                extra={"channel": CHANNEL, "peer": request.remote, "code": "forged"},
            )
            return error_response(403, "forbidden", "missing or wrong secret token")
        if not self.ready.is_set():
            return error_response(503, "not_ready", "the Telegram channel is still connecting")
        try:
            data = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            TELEGRAM_UPDATES.labels("invalid").inc()
            return error_response(400, "invalid_json", "the body must be a JSON object")
        update_id = data.get("update_id") if isinstance(data, dict) else None
        if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
            TELEGRAM_UPDATES.labels("invalid").inc()
            return error_response(400, "invalid_update", "an update needs a non-negative update_id")
        try:
            update = Update.de_json(data, self.bot)
        except Exception as e:
            TELEGRAM_UPDATES.labels("invalid").inc()
            log.warning("malformed telegram update %s: %r", update_id, e)
            return error_response(400, "invalid_update", "not a Telegram update")
        result = await self.process(update)
        if result is Result.BUSY:
            return error_response(503, "busy", "this update is being processed; retry later")
        if result is Result.FAILED:
            return error_response(500, "internal", "the update was not stored; retry")
        return web.json_response({"ok": True, "result": str(result)})

    async def process(self, update: Update) -> Result:
        """Deduplicate, then let PTB dispatch to our handlers. Idempotent."""
        claim = await self.dedup.claim(update.update_id)
        if claim is not Claim.NEW:
            result = Result.DUPLICATE if claim is Claim.DONE else Result.BUSY
            TELEGRAM_UPDATES.labels(str(result)).inc()
            return result
        if await self._flooding(update):
            await self.dedup.done(update.update_id)  # acknowledged, deliberately not stored
            TELEGRAM_UPDATES.labels("rate_limited").inc()
            return Result.RATE_LIMITED
        error: BaseException | None
        try:
            await self.app.process_update(update)
            error = self._failed.pop(update.update_id, None)
        except Exception as e:  # PTB hands handler errors to _on_error; this is anything else
            error = e
        if error is not None:
            await self.dedup.release(update.update_id)
            TELEGRAM_UPDATES.labels("failed").inc()
            log.error("telegram update %s failed: %r", update.update_id, error)
            return Result.FAILED
        await self.dedup.done(update.update_id)
        TELEGRAM_UPDATES.labels("accepted").inc()
        return Result.ACCEPTED

    async def _flooding(self, update: Update) -> bool:
        """Over `rate_per_chat_per_minute` (shared by replicas): the chat is told once per
        minute to slow down, directly (best effort), and the message is not stored or
        answered — the NLU and the agents are not at the mercy of one script."""
        chat = update.effective_chat
        if chat is None:
            return False
        limit = self.cfg.rate_per_chat_per_minute
        # The shared fixed-window counter the widget uses per IP, keyed by chat here.
        wait = await rate_window(self.live.redis, self.live.keys, f"tg{chat.id}", limit)
        if not wait:
            return False
        log.warning("telegram chat %s is flooding; message dropped", chat.id,
                    extra={"channel": CHANNEL, "code": "rate_limited"})  # fmt: skip
        first_over = await self.live.redis.set(
            f"{self.dedup.prefix}:slowdown:{chat.id}", "1", nx=True, ex=60
        )
        if first_over:
            user = update.effective_user
            lang = language_of(user.language_code if user else None) or "vi"
            text = self.texts.get("slow_down", lang, seconds=str(max(1, round(wait))))
            self._spawn(quietly(self.bot.send_message(chat.id, text)), "telegram-slow-down")
        return True
