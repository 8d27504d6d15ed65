"""A local fake of the Telegram Bot API (aiohttp), for python-telegram-bot's `base_url`.

It answers the methods careline uses, records every call, and can be told to fail: 429 with
retry_after, 5xx, timeouts (the request hangs past the client's timeout and is *not*
recorded, like a request that never reached Telegram), 403 "bot was blocked", or to stay down
until `recover()`. Tests read `sent(chat_id)` to see exactly what a customer received.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from nlu.process import free_port

BOT_ID = 7000001
TOKEN = f"{BOT_ID}:AAFakeTokenForCarelineTests_0123456789abc"
USERNAME = "careline_test_bot"


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float  # time.monotonic() when the fake answered it


@dataclass
class Fault:
    # "429" | "500" | "502" | "timeout" | "403" | "401" | "chat_not_found" | "delivered_timeout"
    # (the message reaches the chat, but the answer comes too late for the sender to see it)
    kind: str
    retry_after: int = 1
    when: Callable[[dict[str, Any]], bool] | None = None  # only calls with matching params


@dataclass
class FakeBotAPI:
    hang_s: float = 3.0  # how long a "timeout" fault holds the request
    latency_s: float = 0.0  # added to every sendMessage (benchmarks: a realistic round trip)
    calls: list[Call] = field(default_factory=list)
    attempts: list[Call] = field(default_factory=list)  # sendMessage tries, failed ones too
    faults: dict[str, deque[Fault]] = field(default_factory=dict)
    down: str | None = None  # a fault kind applied to every sendMessage until recover()
    blocked: set[str] = field(default_factory=set)  # chat ids that blocked the bot
    updates: deque[dict[str, Any]] = field(default_factory=deque)  # for getUpdates (polling)
    url: str = ""
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None

    async def start(self) -> FakeBotAPI:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- steering -----------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        kind: str,
        *,
        times: int = 1,
        retry_after: int = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self.faults.setdefault(method, deque()).extend(
            Fault(kind, retry_after, when) for _ in range(times)
        )

    def go_down(self, kind: str = "502") -> None:
        self.down = kind

    def recover(self) -> None:
        self.down = None

    # -- reading ------------------------------------------------------------------------------

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def sent(self, chat_id: int | str) -> list[Call]:
        return [c for c in self.of("sendMessage") if str(c.params.get("chat_id")) == str(chat_id)]

    def texts(self, chat_id: int | str) -> list[str]:
        return [c.params["text"] for c in self.sent(chat_id)]

    # -- the API ------------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return dict(await request.json())
        form = await request.post()
        params: dict[str, Any] = {}
        for key, value in form.items():
            if not isinstance(value, str):
                continue
            try:
                params[key] = json.loads(value) if value[:1] in "[{" else value
            except ValueError:
                params[key] = value
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != TOKEN:
            return _err(401, "Unauthorized")
        method = request.match_info["method"]
        params = await self._params(request)
        if method == "sendMessage":
            self.attempts.append(Call(method, params, time.monotonic()))
            if str(params.get("chat_id")) in self.blocked:
                return _err(403, "Forbidden: bot was blocked by the user")
        fault = self._next_fault(method, params)
        if fault is not None:
            if fault.kind == "timeout":
                await asyncio.sleep(self.hang_s)
                return _err(504, "Gateway Timeout")
            if fault.kind == "429":
                return _err(
                    429,
                    f"Too Many Requests: retry after {fault.retry_after}",
                    parameters={"retry_after": fault.retry_after},
                )
            if fault.kind == "403":
                return _err(403, "Forbidden: bot was blocked by the user")
            if fault.kind == "401":
                return _err(401, "Unauthorized")
            if fault.kind == "chat_not_found":
                return _err(400, "Bad Request: chat not found")
            if fault.kind == "delivered_timeout":
                self.calls.append(Call(method, params, time.monotonic()))  # the customer has it
                self._result(method, params)
                await asyncio.sleep(self.hang_s)
                return _err(504, "Gateway Timeout")
            return _err(int(fault.kind), "Internal Server Error")
        if method == "getUpdates":
            return await self._get_updates(params)
        if method == "sendMessage" and self.latency_s:
            await asyncio.sleep(self.latency_s)
        self.calls.append(Call(method, params, time.monotonic()))
        return web.json_response({"ok": True, "result": self._result(method, params)})

    def _next_fault(self, method: str, params: dict[str, Any]) -> Fault | None:
        if method == "sendMessage" and self.down is not None:
            return Fault(self.down)
        queue = self.faults.get(method) or deque()
        for fault in queue:
            if fault.when is None or fault.when(params):
                queue.remove(fault)
                return fault
        return None

    async def _get_updates(self, params: dict[str, Any]) -> web.Response:
        offset = int(params.get("offset") or 0)
        while self.updates and self.updates[0]["update_id"] < offset:
            self.updates.popleft()  # confirmed by the offset
        if not self.updates:
            await asyncio.sleep(0.05)
        batch = [u for u in self.updates if u["update_id"] >= offset]
        return web.json_response({"ok": True, "result": batch})

    def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return {"id": BOT_ID, "is_bot": True, "first_name": "Careline", "username": USERNAME}
        if method == "sendMessage":
            chat_id = int(params["chat_id"])
            message = {
                "message_id": next(self._ids),
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"},
                "text": params.get("text", ""),
            }
            if params.get("reply_markup"):
                message["reply_markup"] = params["reply_markup"]
            return message
        return True  # setWebhook, deleteWebhook, answerCallbackQuery, editMessageReplyMarkup


def _err(status: int, description: str, **extra: Any) -> web.Response:
    body = {"ok": False, "error_code": status, "description": description, **extra}
    return web.json_response(body, status=status)
