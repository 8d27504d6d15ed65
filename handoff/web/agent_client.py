"""A small Python client for the agent API and WebSocket (docs/openapi.yaml).

Used by the tests and the latency bench; also handy for scripting against a deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import aiohttp


class AgentAPIError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class AgentClient:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        # unsafe=True: keep cookies set by an IP-address host (loopback in tests)
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf: str | None = None
        self.principal: dict[str, Any] = {}
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self.ws is not None:
            await self.ws.close()
        await self.http.close()

    async def login(self, username: str, password: str) -> dict[str, Any]:
        body = await self.request(
            "POST", "/api/auth/login", {"username": username, "password": password}
        )
        self.csrf = body["csrf_token"]
        self.principal = body["principal"]
        return body

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, csrf: bool = True
    ) -> Any:
        headers = {"X-CSRF-Token": self.csrf} if csrf and self.csrf else {}
        async with self.http.request(method, self.base + path, json=body, headers=headers) as r:
            data = await r.json(content_type=None)
            if r.status >= 400:
                raise AgentAPIError(r.status, data)
            return data

    async def get(self, path: str) -> Any:
        return await self.request("GET", path)

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return await self.request("POST", path, body or {})

    async def online(self) -> None:
        await self.post("/api/agent/presence", {"status": "online"})

    async def connect(self) -> dict[str, Any]:
        url = self.base.replace("http", "ws", 1) + "/ws/agent"
        self.ws = await self.http.ws_connect(url, headers={"Origin": self.base})
        self._reader = asyncio.create_task(self._read())
        return await self.next_frame(lambda f: f["type"] == "hello")

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                frame = json.loads(msg.data)
                frame["_received"] = time.time()
                await self.frames.put(frame)

    async def send(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_json(frame)

    async def next_frame(self, match: Any = None, timeout: float = 15.0) -> dict[str, Any]:
        """The next frame for which match(frame) is true (others are dropped)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.frames.get()
                if match is None or match(frame):
                    return frame

    async def console_event(
        self, kind: str, timeout: float = 15.0, **fields: Any
    ) -> dict[str, Any]:
        def match(f: dict[str, Any]) -> bool:
            e = f.get("event", {})
            return (
                f["type"] == "console"
                and e.get("kind") == kind
                and all(e.get(k) == v for k, v in fields.items())
            )

        return (await self.next_frame(match, timeout))["event"]
