"""The Telegram channel's PTB handlers: each command, text, attachment and button becomes an
`InboundMessage` for the conversation core (or an answer the channel gives directly), exactly
as the widget's frames do. The base of the channel: it builds PTB's Application around them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from aiohttp import web
from telegram import Update
from telegram.error import TelegramError
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
from bot.channels.telegram.credentials import TelegramCredentials
from bot.channels.telegram.dedup import UpdateDedup
from bot.channels.telegram.ledger import DeliveryLedger
from bot.channels.telegram.sender import CHANNEL, TelegramSender
from bot.channels.telegram.texts import TelegramTexts
from bot.channels.widget import clean_text
from bot.conversation.ports import ChannelInbound
from bot.core.messages import InboundMessage
from bot.core.settings import Settings
from bot.core.store.db import Database
from bot.core.vocabulary import LANGS

log = logging.getLogger("careline.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message", "callback_query"]
PRIVATE = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE


async def quietly(call: Coroutine[Any, Any, Any]) -> None:
    """Ephemeral UI calls: worth one try, never worth failing a stored message over."""
    try:
        await call
    except TelegramError as e:
        log.info("telegram UI call failed (harmless): %s", e, extra={"channel": CHANNEL})


def log_accepted(conversation_id: str, what: str) -> None:
    log.info(
        "telegram %s accepted", what, extra={"conversation_id": conversation_id, "channel": CHANNEL}
    )


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"ok": False, "code": code, "message": message}, status=status)


class TelegramHandlers:
    def __init__(
        self,
        *,
        settings: Settings,
        inbound: ChannelInbound,
        live: LiveServices,
        db: Database,
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
        self.ledger = DeliveryLedger(db.sql_engine)
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

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if isinstance(update, Update) and context.error is not None:
            self._failed[update.update_id] = context.error

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
        log_accepted(accepted.conversation_id, key)

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
        log_accepted(accepted.conversation_id, "human")

    async def _on_end(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The customer ends the chat, like the widget's end button: the engine resolves it
        (and the survey, when there is one, starts)."""
        customer, _ = await self._customer(update)
        conv = await self.db.latest_conversation(customer.id)
        if conv is not None and conv.state != "CLOSED":
            await self.inbound.end(conv.id)
            log_accepted(conv.id, "end")

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
        log_accepted(accepted.conversation_id, "text")

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
            log_accepted(accepted.conversation_id, kind)
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
            self._spawn(quietly(query.answer()), "telegram-answer-callback")
            return
        message_id, title, payload = option
        _, lang = await self._customer(update)
        inbound = self._inbound(update, lang, title, f"tg-qr-{message_id}", payload=payload)
        accepted = await self.inbound.accept(inbound)
        log_accepted(accepted.conversation_id, "button")
        self._spawn(quietly(query.answer()), "telegram-answer-callback")
        if query.message is not None:
            self._spawn(quietly(query.edit_message_reply_markup(None)), "telegram-unbutton")
