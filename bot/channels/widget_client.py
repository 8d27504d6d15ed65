"""A Python client for the widget protocol (docs/WIDGET_PROTOCOL.md).

For load generation (bench/gateway_bench.py), operators' smoke checks and the tests: it
speaks exactly what the JavaScript widget speaks, including resume from the last event id.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp


class WidgetClient:
    def __init__(self, ws_url: str, *, origin: str | None = None, locale: str = "vi") -> None:
        self.ws_url = ws_url
        self.origin = origin
        self.locale = locale
        self.token: str | None = None
        self.conversation_id: str | None = None
        self.last_event_id: str | None = None
        self.frames: list[dict[str, Any]] = []  # everything received, in order
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self, *, resume: bool = True) -> dict[str, Any]:
        """Open the socket and say hello; returns `welcome`. With resume=False the client
        behaves like a freshly loaded page (history instead of replay)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Origin": self.origin} if self.origin else None
        self._ws = await self._session.ws_connect(self.ws_url, headers=headers, heartbeat=None)
        hello: dict[str, Any] = {"type": "hello", "locale": self.locale}
        if self.token:
            hello["token"] = self.token
        if resume and self.last_event_id:
            hello["last_event_id"] = self.last_event_id
        await self.send_frame(hello)
        welcome = await self.expect(lambda f: f["type"] in ("welcome", "error"))
        if welcome["type"] == "welcome":
            self.token = welcome["token"]
            self.conversation_id = welcome["conversation_id"] or self.conversation_id
        return welcome

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def closed_by_server(self, timeout: float = 10.0) -> int | None:
        """Wait for the server to close the socket (frames before it are kept in .frames);
        the close code it gave."""
        assert self._ws is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await self._ws.receive(timeout=max(0.0, deadline - loop.time()))
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(msg.data))
                continue
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING):
                return int(msg.data) if msg.data is not None else self._ws.close_code
            return self._ws.close_code

    async def drop(self) -> None:
        """Close only the socket (a dropped connection); the session state is kept."""
        if self._ws is not None:
            await self._ws.close()

    async def send_frame(self, frame: dict[str, Any] | str | bytes) -> None:
        assert self._ws is not None
        if isinstance(frame, bytes):
            await self._ws.send_bytes(frame)
        elif isinstance(frame, str):
            await self._ws.send_str(frame)
        else:
            await self._ws.send_str(json.dumps(frame, ensure_ascii=False))

    async def say(self, text: str, *, client_msg_id: str | None = None,
                  payload: str | None = None) -> str:  # fmt: skip
        """Send a customer message; returns its client_msg_id."""
        cid = client_msg_id or uuid.uuid4().hex
        frame: dict[str, Any] = {"type": "message", "client_msg_id": cid, "text": text}
        if payload is not None:
            frame.update(type="quick_reply", payload=payload)
        await self.send_frame(frame)
        return cid

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        assert self._ws is not None
        msg = await self._ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket closed or non-text frame: {msg.type!r} {msg.data!r}")
        frame = json.loads(msg.data)
        self.frames.append(frame)
        if frame["type"] == "event":
            self.last_event_id = frame["eid"]
        elif frame["type"] == "history":
            self.last_event_id = frame["last_event_id"]
            self.conversation_id = frame["conversation_id"]
        elif frame["type"] == "ack":
            self.conversation_id = frame["conversation_id"]
        return frame

    async def expect(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        """Receive until a frame matches `predicate` (earlier frames are kept in .frames)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching frame within {timeout} s; got {self.frames[-5:]}")
            frame = await self.recv(timeout=left)
            if predicate(frame):
                return frame

    async def bot_reply(self, timeout: float = 15.0) -> dict[str, Any]:
        """The next message event from the bot or the system (not the customer's echo)."""
        frame = await self.expect(
            lambda f: (
                f["type"] == "event"
                and f["event"]["kind"] == "message"
                and f["event"]["message"]["sender"] != "customer"
            ),
            timeout,
        )
        return frame["event"]["message"]

    def messages(self) -> list[dict[str, Any]]:
        """Every message seen (history + events), de-duplicated by id like the widget does."""
        seen: dict[int, dict[str, Any]] = {}
        for f in self.frames:
            if f["type"] == "history":
                for m in f["messages"]:
                    seen.setdefault(m["id"], m)
            elif f["type"] == "event" and f["event"]["kind"] == "message":
                m = f["event"]["message"]
                seen.setdefault(m["id"], m)
        return [seen[k] for k in sorted(seen)]


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, every: float = 0.05) -> Any:
    """Poll an async or sync predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(every)
