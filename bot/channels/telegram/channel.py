"""The Telegram channel: python-telegram-bot's Application inside our aiohttp gateway.

Inbound: Telegram posts updates to our webhook route (or, in development, PTB's updater polls
for them). Each update is checked (secret token, shape), deduplicated by update_id, and fed to
PTB's Application, whose handlers turn it into an `InboundMessage` for the conversation engine,
exactly like the widget does. The webhook answers 200 only once the message is stored in SQL,
so Telegram keeps retrying anything a crash interrupted.

Outbound: nothing here sends replies directly; every stored message goes through the engine's
publish() and the Telegram outbox (sender.py). Only the ephemeral bits of a button press
(answering the callback query, removing the used keyboard) are sent from here, best effort.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Coroutine, Mapping
from enum import StrEnum
from typing import Any

from aiohttp import web
from telegram import Update
from telegram.error import BadRequest, InvalidToken, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.channels.services import LiveServices
from bot.channels.telegram.content import attachment_record, language_of
from bot.channels.telegram.credentials import TOKEN_ENV, TelegramCredentials
from bot.channels.telegram.dedup import Claim, UpdateDedup
from bot.channels.telegram.ledger import DeliveryLedger
from bot.channels.telegram.metrics import TELEGRAM_UPDATES
from bot.channels.telegram.sender import CHANNEL, TelegramSender
from bot.channels.telegram.texts import TelegramTexts
from bot.channels.widget import clean_text
from bot.conversation.ports import ChannelInbound
from bot.core.live.ratelimit import rate_window
from bot.core.messages import InboundMessage
from bot.core.settings import Settings

log = logging.getLogger("careline.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message", "callback_query"]
from bot.core.vocabulary import LANGS  # noqa: E402

PRIVATE = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE


class Result(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    RATE_LIMITED = "rate_limited"
    BUSY = "busy"
    FAILED = "failed"


class TelegramChannel:
    def __init__(
        self,
        *,
        settings: Settings,
        inbound: ChannelInbound,
        live: LiveServices,
        db: Any,
        credentials: TelegramCredentials,
        texts: TelegramTexts,
        public_url: str,
        replica: str,
    ) -> None:
        self.settings = settings
        self.cfg = settings.telegram
        self.inbound = inbound
        self.live = live
        self.db = db
        self.credentials = credentials
        self.texts = texts
        self.public_url = (self.cfg.public_base_url or public_url).rstrip("/")
        # Telegram cannot be told "too long" like the widget, so longer text is cut to what the
        # NLU accepts (a longer text would be refused there and never answered).
        self.max_text = min(self.cfg.max_text_chars, settings.nlu.max_text_chars)
        self.app = self._build_application()
        self.bot = self.app.bot
        prefix = live.keys.telegram(credentials.bot_id)
        self.dedup = UpdateDedup(
            live.redis, prefix, done_ttl_s=int(self.cfg.dedup_ttl_hours * 3600)
        )
        self.ready = asyncio.Event()
        self.ledger = DeliveryLedger(db.engine)
        self.sender = TelegramSender(
            bot=self.bot,
            redis=live.redis,
            outbound=live.outbound,
            db=db,
            ledger=self.ledger,
            cfg=self.cfg.outbox,
            consumer=replica,
            ready=self.ready,
        )
        self._failed: dict[int, BaseException] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sender_task: asyncio.Task[None] | None = None

    def _build_application(self) -> Application:  # type: ignore[type-arg]
        t = self.cfg.outbox.send_timeout_s
        api = self.cfg.api_base_url.rstrip("/")
        builder = (
            Application.builder()
            .token(self.credentials.token)
            .base_url(f"{api}/bot")
            .base_file_url(f"{api}/file/bot")
            .connect_timeout(t)
            .read_timeout(t)
            .write_timeout(t)
            .pool_timeout(t)
            .connection_pool_size(self.cfg.outbox.concurrency + 8)
        )
        if self.cfg.mode != "polling":
            builder = builder.updater(None)  # webhooks arrive through our own route
        app = builder.build()
        app.add_handler(CommandHandler("start", self._on_start, filters=PRIVATE))
        app.add_handler(CommandHandler("help", self._on_help, filters=PRIVATE))
        app.add_handler(CommandHandler("human", self._on_human, filters=PRIVATE))
        app.add_handler(CommandHandler("lang", self._on_lang, filters=PRIVATE))
        app.add_handler(CommandHandler("end", self._on_end, filters=PRIVATE))
        app.add_handler(MessageHandler(PRIVATE & filters.COMMAND, self._on_help))  # unknown
        app.add_handler(MessageHandler(PRIVATE & filters.TEXT, self._on_text))
        app.add_handler(MessageHandler(PRIVATE & ~filters.TEXT, self._on_attachment))
        app.add_handler(CallbackQueryHandler(self._on_button))
        app.add_error_handler(self._on_error)
        return app

    # -- lifecycle --------------------------------------------------------------------------

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

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- inbound ----------------------------------------------------------------------------

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
            return _error(403, "forbidden", "missing or wrong secret token")
        if not self.ready.is_set():
            return _error(503, "not_ready", "the Telegram channel is still connecting")
        try:
            data = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            TELEGRAM_UPDATES.labels("invalid").inc()
            return _error(400, "invalid_json", "the body must be a JSON object")
        update_id = data.get("update_id") if isinstance(data, dict) else None
        if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
            TELEGRAM_UPDATES.labels("invalid").inc()
            return _error(400, "invalid_update", "an update needs a non-negative update_id")
        try:
            update = Update.de_json(data, self.bot)
        except Exception as e:
            TELEGRAM_UPDATES.labels("invalid").inc()
            log.warning("malformed telegram update %s: %r", update_id, e)
            return _error(400, "invalid_update", "not a Telegram update")
        result = await self.process(update)
        if result is Result.BUSY:
            return _error(503, "busy", "this update is being processed; retry later")
        if result is Result.FAILED:
            return _error(500, "internal", "the update was not stored; retry")
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
            self._spawn(_quietly(self.bot.send_message(chat.id, text)), "telegram-slow-down")
        return True

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if isinstance(update, Update) and context.error is not None:
            self._failed[update.update_id] = context.error

    # -- handlers ---------------------------------------------------------------------------

    async def _customer(self, update: Update) -> tuple[Any, str]:
        """The customer row (created on first contact) and the language to talk to them in:
        their /lang choice, else Telegram's language_code, else Vietnamese."""
        chat, user = update.effective_chat, update.effective_user
        assert chat is not None
        customer = await self.db.get_or_create_customer(
            CHANNEL,
            str(chat.id),
            language=language_of(user.language_code if user else None),
            display_name=(user.full_name[:120] if user else None),
        )
        if customer.unreachable:  # they write again, so they unblocked us: deliver again
            await self.db.update_customer(customer.id, unreachable=False)
            self._wake_later(customer.id)
        return customer, customer.language or "vi"

    def _wake_later(self, customer_id: str) -> None:
        async def wake() -> None:
            conv = await self.db.latest_conversation(customer_id)
            if conv is not None:
                await self.live.outbound.notify(CHANNEL, conv.id)

        self._spawn(wake(), "telegram-wake")

    def _inbound(
        self, update: Update, lang: str | None, text: str, client_msg_id: str, **extra: Any
    ) -> InboundMessage:
        chat, user = update.effective_chat, update.effective_user
        assert chat is not None
        return InboundMessage(
            CHANNEL,
            str(chat.id),
            text,
            client_msg_id,
            locale=lang,
            display_name=user.full_name[:120] if user else None,
            **extra,
        )

    async def _answer(
        self,
        update: Update,
        key: str,
        text: str,
        *,
        locale: str,
        language: str | None = None,
        stored: str | None = None,
        **extra: Any,
    ) -> None:
        """Store the customer's message and answer it with the channel's own `text`;
        `language` is an explicit choice to record on the conversation (/start, /lang)."""
        message = update.effective_message
        assert message is not None
        said = stored or clean_text(message.text or "")[: self.max_text] or f"/{key}"
        inbound = self._inbound(update, locale, said, f"tg-{message.message_id}", **extra)
        accepted = await self.inbound.answer_directly(inbound, key, text, language=language)
        _log_accepted(accepted.conversation_id, key)

    async def _on_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        _, lang = await self._customer(update)
        await self._answer(
            update, "start", self.texts.get("start", lang), locale=lang, language=lang
        )

    async def _on_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        _, lang = await self._customer(update)
        await self._answer(update, "help", self.texts.get("help", lang), locale=lang)

    async def _on_lang(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        customer, lang = await self._customer(update)
        choice = (context.args or [""])[0].lower()
        if choice not in LANGS:
            await self._answer(
                update, "lang_usage", self.texts.get("lang_usage", lang), locale=lang
            )
            return
        await self.db.update_customer(customer.id, language=choice)
        await self._answer(
            update, "lang", self.texts.get("lang_set", choice), locale=choice, language=choice
        )

    async def _on_human(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Exactly the widget's "talk to a person" button: the engine escalates."""
        _, lang = await self._customer(update)
        message = update.effective_message
        assert message is not None
        title = self.live.content.title("request_human", lang)
        inbound = self._inbound(
            update, lang, title, f"tg-{message.message_id}", payload="intent:request_human"
        )
        accepted = await self.inbound.accept(inbound)
        _log_accepted(accepted.conversation_id, "human")

    async def _on_end(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The customer ends the chat, like the widget's end button: the engine resolves it
        (and the survey, when there is one, starts)."""
        customer, _ = await self._customer(update)
        conv = await self.db.latest_conversation(customer.id)
        if conv is not None and conv.state != "CLOSED":
            await self.inbound.end(conv.id)
            _log_accepted(conv.id, "end")

    async def _on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        text = clean_text(message.text or "")[: self.max_text]
        if not text:
            return  # only control characters: nothing to store or answer
        _, lang = await self._customer(update)
        accepted = await self.inbound.accept(
            self._inbound(update, lang, text, f"tg-{message.message_id}")
        )
        _log_accepted(accepted.conversation_id, "text")

    async def _on_attachment(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Photos, stickers, voice, files: stored for the agent (a photo of a swollen battery
        matters to the safety queue). With a caption the bot reads the caption; without, the
        customer is told politely that the file was kept and asked to describe it in words."""
        message = update.effective_message
        assert message is not None
        found = attachment_record(message)
        if found is None:
            return  # service messages (pinned, joined, …): nothing for the customer or agent
        kind, record = found
        _, lang = await self._customer(update)
        caption = clean_text(message.caption or "")[: self.max_text]
        if caption:
            inbound = self._inbound(
                update, lang, caption, f"tg-{message.message_id}", attachment=record
            )
            accepted = await self.inbound.accept(inbound)
            _log_accepted(accepted.conversation_id, kind)
            return
        ack = self.texts.get("attachment", lang, kind=self.texts.kind(kind, lang))
        await self._answer(
            update, "attachment", ack, locale=lang, stored=f"[{kind}]", attachment=record
        )

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A quick-reply (or survey) button: the option we offered, as the customer's message.

        Keyed by the keyboard's message, so a double tap counts once; then the spinner is
        stopped and the buttons are removed."""
        query = update.callback_query
        assert query is not None
        chat = update.effective_chat
        option = None
        if chat is not None:
            option = await self.ledger.offered_option(query.data or "", str(chat.id))
        if option is None:
            self._spawn(_quietly(query.answer()), "telegram-answer-callback")
            return
        message_id, title, payload = option
        _, lang = await self._customer(update)
        inbound = self._inbound(update, lang, title, f"tg-qr-{message_id}", payload=payload)
        accepted = await self.inbound.accept(inbound)
        _log_accepted(accepted.conversation_id, "button")
        self._spawn(_quietly(query.answer()), "telegram-answer-callback")
        if query.message is not None:
            self._spawn(_quietly(query.edit_message_reply_markup(None)), "telegram-unbutton")


async def _quietly(call: Coroutine[Any, Any, Any]) -> None:
    """Ephemeral UI calls: worth one try, never worth failing a stored message over."""
    try:
        await call
    except TelegramError as e:
        log.info("telegram UI call failed (harmless): %s", e, extra={"channel": CHANNEL})


def _log_accepted(conversation_id: str, what: str) -> None:
    log.info(
        "telegram %s accepted", what, extra={"conversation_id": conversation_id, "channel": CHANNEL}
    )


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"ok": False, "code": code, "message": message}, status=status)


async def start_telegram(
    settings: Settings,
    inbound: ChannelInbound,
    live: LiveServices,
    db: Any,
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
