"""The website widget channel: one WebSocket per browser tab (docs/WIDGET_PROTOCOL.md).

Adapts frames to `InboundMessage` for the core and streams the conversation's events back.
Hostile input is expected: every frame is size-checked, parsed defensively and rate-limited,
and a bad frame gets an `error` frame while the connection stays usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from aiohttp import ClientConnectionResetError, WSCloseCode, WSMsgType, web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.conversation.ports import ChannelInbound
from bot.core import wire_json
from bot.core.client_address import client_address, parse_networks
from bot.core.live import sockets
from bot.core.live.hub import Hub
from bot.core.live.ratelimit import TokenBucket, rate_window
from bot.core.live.streams import EventLog, already_sent, carried_event
from bot.core.messages import InboundMessage
from bot.core.metrics import WIDGET_CONNECTIONS, WIDGET_ERRORS, WIDGET_MESSAGES
from bot.core.security import TokenSigner
from bot.core.settings import Settings
from bot.core.store.db import STORE_UNREACHABLE, Database
from bot.core.views import message_view
from nlu.vi.text import nfc

log = logging.getLogger("careline.widget")
# What says the database or Redis is out (not a bug): the message is refused as `unavailable`.
UNREACHABLE = (*STORE_UNREACHABLE, RedisConnectionError, RedisTimeoutError)

CHANNEL = "widget"
CLIENT_MSG_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# A page says hello once per connection (again only to switch language); more is a flood.
MAX_HELLOS_PER_CONNECTION = 5
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # keeps \t and \n
CLIENT_TYPES = {"hello", "message", "quick_reply", "typing", "end", "ping"}


def clean_text(text: str) -> str:
    """Drop control characters (but not newlines/tabs), compose accents, trim."""
    return nfc(_CONTROL.sub("", text)).strip()


def _encodable(text: str) -> bool:
    """Can `text` be stored as UTF-8? (False for lone surrogates such as "\ud800".)"""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


STORE_RETRY_AFTER_S = 2.0  # a refused message's next try while the database is out


def _named_message(frame: object) -> dict[str, str]:
    """The refused frame's client_msg_id, when it has a valid one: the widget then retries
    that very message (same id: stored at most once)."""
    cid = frame.get("client_msg_id") if isinstance(frame, dict) else None
    return {"client_msg_id": cid} if isinstance(cid, str) and CLIENT_MSG_ID.match(cid) else {}


class FrameError(Exception):
    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


class WidgetChannel:
    def __init__(
        self,
        *,
        settings: Settings,
        engine: ChannelInbound,
        db: Database,
        event_log: EventLog,
        hub: Hub,
        signer: TokenSigner,
        own_origin: str,
    ) -> None:
        self.settings = settings
        self.cfg = settings.widget
        self.proxies = parse_networks(settings.gateway.trusted_proxies)
        self.engine = engine
        self.db = db
        self.event_log = event_log
        self.hub = hub
        self.signer = signer
        self.allowed_origins = {o.rstrip("/") for o in self.cfg.allowed_origins} | {
            own_origin.rstrip("/"),
            own_origin.replace("127.0.0.1", "localhost").rstrip("/"),
        }
        self.connections_per_ip: Counter[str] = Counter()

    def origin_allowed(self, origin: str | None) -> bool:
        """Browsers always send Origin on WebSockets; non-browser clients may omit it."""
        if origin is None:
            return True
        parts = urlsplit(origin)
        return f"{parts.scheme}://{parts.netloc}" in self.allowed_origins

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ip = client_address(request, self.proxies)
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=4 * self.cfg.max_frame_bytes)
        await ws.prepare(request)
        sockets.track(request, ws)
        if not self.origin_allowed(request.headers.get("Origin")):
            await _send(ws, error_frame("origin_not_allowed", "this site may not embed the chat"))
            await ws.close(code=4403, message=b"origin not allowed")
            WIDGET_ERRORS.labels("origin_not_allowed").inc()
            return ws
        if self.connections_per_ip[ip] >= self.cfg.max_connections_per_ip:
            await _send(ws, error_frame("too_many_connections", "too many open chats from here"))
            await ws.close(code=4429, message=b"too many connections")
            WIDGET_ERRORS.labels("too_many_connections").inc()
            return ws
        self.connections_per_ip[ip] += 1
        WIDGET_CONNECTIONS.inc()
        connection = WidgetConnection(self, ws, ip)
        try:
            await connection.run()
        finally:
            await connection.close()
            self.connections_per_ip[ip] -= 1
            if self.connections_per_ip[ip] <= 0:
                del self.connections_per_ip[ip]
            WIDGET_CONNECTIONS.dec()
        return ws


def error_frame(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, **extra}


async def _send(ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
    """Send if the visitor is still there; one who left mid-reply is not an error."""
    if ws.closed:
        return
    with contextlib.suppress(ConnectionResetError, ClientConnectionResetError):
        await ws.send_str(wire_json.dumps(frame))


class WidgetConnection:
    """One connected widget: its visitor, its conversation and its delivery cursor."""

    def __init__(self, channel: WidgetChannel, ws: web.WebSocketResponse, ip: str) -> None:
        self.ch = channel
        self.ws = ws
        self.ip = ip
        self.visitor: str | None = None
        self.new_visitor = False  # made up at this hello, and no message stored yet
        self.hellos = 0
        self.locale: str | None = None
        self.conversation_id: str | None = None
        self.cursor = "0-0"  # id of the last event sent to this socket
        self.queue: asyncio.Queue[dict[str, Any]] | None = None
        self.delivery: asyncio.Task[None] | None = None
        self.send_lock = asyncio.Lock()
        self.bucket = TokenBucket(channel.cfg.rate_per_connection, channel.cfg.burst_per_connection)
        self.typing: tuple[bool, float] = (False, 0.0)  # last relayed state, when

    async def run(self) -> None:
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                await self._frame(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await self._error(FrameError("binary_not_supported", "send JSON text frames"))
            elif msg.type == WSMsgType.ERROR:
                break

    async def close(self) -> None:
        if self.delivery:
            self.delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.delivery
        if self.queue is not None and self.conversation_id:
            await self.ch.hub.unsubscribe(self.conversation_id, self.queue)

    async def _error(self, e: FrameError) -> None:
        WIDGET_ERRORS.labels(e.code).inc()
        await self._send(error_frame(e.code, e.message, **e.extra))

    async def _send(self, frame: dict[str, Any]) -> None:
        async with self.send_lock:
            await _send(self.ws, frame)

    async def _frame(self, data: str) -> None:
        frame: Any = None
        try:
            if len(data.encode("utf-8", "replace")) > self.ch.cfg.max_frame_bytes:
                raise FrameError(
                    "frame_too_large", f"frames are limited to {self.ch.cfg.max_frame_bytes} bytes"
                )
            try:
                frame = json.loads(data)
            except ValueError:
                raise FrameError("invalid_json", "frames must be JSON objects") from None
            if not isinstance(frame, dict):
                raise FrameError("invalid_json", "frames must be JSON objects")
            kind = frame.get("type")
            if kind not in CLIENT_TYPES:
                raise FrameError("unknown_type", f"unknown frame type: {str(kind)[:40]!r}")
            if kind != "hello" and self.visitor is None:
                raise FrameError("hello_required", "send a hello frame first")
            await getattr(self, f"_on_{kind}")(frame)
        except FrameError as e:
            await self._error(e)
        except UNREACHABLE as e:
            # An outage, not a bug: one line, no traceback per frame; the widget keeps the
            # message and sends it again after retry_after, for as long as the outage lasts
            # (a message stored before Redis failed is stored once: re-sending is safe).
            log.warning(
                "widget frame not handled: the database or Redis is unreachable: %r",
                e,
                extra={"conversation_id": self.conversation_id},
            )
            await self._error(
                FrameError(
                    "unavailable",
                    "we cannot save messages just now; yours will be sent again in a moment",
                    retry_after=STORE_RETRY_AFTER_S,
                    **_named_message(frame),
                )
            )
            if isinstance(frame, dict) and frame.get("type") == "hello":
                # No welcome was sent: the widget starts over on a new socket (with backoff).
                await self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"unavailable")
        except Exception:
            log.exception("widget frame failed", extra={"conversation_id": self.conversation_id})
            await self._error(
                FrameError(
                    "internal",
                    "something went wrong on our side; "
                    "your message was not saved, please send it again",
                    **_named_message(frame),
                )
            )

    # -- frame handlers --------------------------------------------------------------------

    async def _on_ping(self, frame: dict[str, Any]) -> None:
        await self._send({"type": "pong"})

    async def _on_typing(self, frame: dict[str, Any]) -> None:
        """Customer typing: relayed (ephemeral) to the agent watching the conversation."""
        if self.conversation_id is None:
            return
        on, now = bool(frame.get("on")), time.monotonic()
        if on == self.typing[0] and now - self.typing[1] < 2.0:
            return  # a repeat within 2 s adds nothing (and a flood must not reach Redis)
        self.typing = (on, now)
        await self.ch.event_log.signal(
            self.conversation_id, {"typing": {"who": "customer", "on": on}}
        )

    async def _on_hello(self, frame: dict[str, Any]) -> None:
        self.hellos += 1
        if self.hellos > MAX_HELLOS_PER_CONNECTION:
            raise FrameError("rate_limited", "too many hello frames on one connection")
        locale = frame.get("locale")
        self.locale = locale if locale in ("vi", "en") else self.locale
        # A fresh token every time: a returning visitor's never runs out, an abandoned one does.
        returning = self.ch.signer.verify(frame.get("token"))
        visitor, token = self.ch.signer.issue(returning)
        self.visitor = visitor
        self.new_visitor = returning is None
        # A visitor just made up has no conversation to look for.
        conv = await self._latest_conversation() if returning else None
        last = frame.get("last_event_id")
        await self._send(
            {
                "type": "welcome",
                "token": token,
                "conversation_id": conv.id if conv else None,
                "state": conv.state if conv else None,
                "language": conv.language if conv else self.locale,
                "limits": {
                    "max_text_chars": self.ch.cfg.max_text_chars,
                    "max_frame_bytes": self.ch.cfg.max_frame_bytes,
                },
            }
        )
        if conv is not None:
            valid_cursor = isinstance(last, str) and re.fullmatch(r"\d+-\d+", last)
            await self._attach(conv.id, last if valid_cursor else None)

    async def _latest_conversation(self) -> Any:
        """The visitor's latest conversation, if they ever wrote: a hello alone stores
        nothing (the customer row is made with their first message)."""
        assert self.visitor is not None
        customer = await self.ch.db.find_customer(CHANNEL, self.visitor)
        return await self.ch.db.latest_conversation(customer.id) if customer else None

    async def _attach(self, conversation_id: str, last_event_id: str | None) -> None:
        """Follow a conversation: history or replay first, then live events."""
        if self.conversation_id == conversation_id:
            return
        if self.conversation_id and self.queue is not None:
            await self.ch.hub.unsubscribe(self.conversation_id, self.queue)
        if self.delivery:
            self.delivery.cancel()
        self.conversation_id = conversation_id
        self.queue = await self.ch.hub.subscribe(conversation_id)  # before reading: no gap
        first = await self.ch.event_log.first_id(conversation_id)
        if last_event_id and (
            first is None or last_event_id == "0-0" or _eid(last_event_id) >= _eid(first)
        ):
            self.cursor = last_event_id  # replay what they missed
        else:
            # Fresh page (or a cursor older than the stream keeps): full history from SQL.
            self.cursor = await self.ch.event_log.last_id(conversation_id)
            messages = await self.ch.db.transcript(conversation_id, include_notes=False)
            await self._send(
                {
                    "type": "history",
                    "conversation_id": conversation_id,
                    "messages": [message_view(m) for m in messages],
                    "last_event_id": self.cursor,
                }
            )
        await self._flush()
        self.delivery = asyncio.create_task(self._deliver(), name="widget-delivery")

    async def _deliver(self) -> None:
        assert self.queue is not None
        while True:
            note = await self.queue.get()
            typing = note.get("typing")
            if typing:
                if typing.get("who") != "customer":
                    await self._send(
                        {"type": "typing", "who": typing.get("who"), "on": bool(typing.get("on"))}
                    )
                continue
            async with self.send_lock:
                if already_sent(note, self.cursor):
                    continue
                carried = carried_event(note, self.cursor)
                if carried is None:
                    await self._flush_locked()
                    continue
                eid, event = carried
                await _send(self.ws, {"type": "event", "eid": eid, "event": event})
                self.cursor = eid

    async def _flush(self) -> None:
        """Send every event after the cursor, in order, exactly once."""
        async with self.send_lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        assert self.conversation_id is not None
        while True:
            events = await self.ch.event_log.after(self.conversation_id, self.cursor)
            for eid, event in events:
                await _send(self.ws, {"type": "event", "eid": eid, "event": event})
                self.cursor = eid
            if len(events) < 500:
                return

    async def _on_message(self, frame: dict[str, Any]) -> None:
        await self._customer_message(frame, payload=None)

    async def _on_quick_reply(self, frame: dict[str, Any]) -> None:
        payload = frame.get("payload")
        if not isinstance(payload, str) or not payload or len(payload) > 200:
            raise FrameError("bad_request", "quick_reply needs a payload string")
        await self._customer_message(frame, payload=payload)

    async def _customer_message(self, frame: dict[str, Any], payload: str | None) -> None:
        cid = frame.get("client_msg_id")
        if not isinstance(cid, str) or not CLIENT_MSG_ID.match(cid):
            raise FrameError("bad_request", "client_msg_id must be 8-64 chars [A-Za-z0-9_-]")
        text = frame.get("text")
        if not isinstance(text, str):
            raise FrameError("bad_request", "text must be a string", client_msg_id=cid)
        if not _encodable(text) or (payload is not None and not _encodable(payload)):
            # "\ud800" in JSON decodes to a lone surrogate, which no store can encode
            raise FrameError(
                "bad_request", "text is not valid Unicode (a lone surrogate)", client_msg_id=cid
            )
        limit = self.ch.cfg.max_text_chars
        if len(text) > limit:
            raise FrameError(
                "text_too_long", f"messages are limited to {limit} characters", client_msg_id=cid
            )
        text = clean_text(text)
        if not text:
            raise FrameError("empty_text", "the message is empty", client_msg_id=cid)
        wait = self.bucket.take() or await rate_window(
            self.ch.event_log.redis,
            self.ch.event_log.keys,
            self.ip,
            self.ch.cfg.rate_per_ip_per_minute,
        )
        if wait:
            raise FrameError(
                "rate_limited",
                "you are sending messages too fast",
                retry_after=round(wait, 2),
                client_msg_id=cid,
            )
        assert self.visitor is not None
        accepted = await self.ch.engine.accept(
            InboundMessage(
                CHANNEL, self.visitor, text, cid, locale=self.locale, payload=payload,
                new_identity=self.new_visitor,
            )
        )  # fmt: skip
        self.new_visitor = False
        WIDGET_MESSAGES.inc()
        await self._send(
            {
                "type": "ack",
                "client_msg_id": cid,
                "message_id": accepted.message_id,
                "conversation_id": accepted.conversation_id,
            }
        )
        if self.conversation_id != accepted.conversation_id:
            # First message (or a new conversation after close): follow it from its start.
            await self._attach(accepted.conversation_id, "0-0")

    async def _on_end(self, frame: dict[str, Any]) -> None:
        if self.conversation_id:
            await self.ch.engine.end(self.conversation_id)


def _eid(value: str) -> tuple[int, int]:
    ms, seq = value.split("-")
    return int(ms), int(seq)
