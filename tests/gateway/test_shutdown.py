"""A replica told to stop closes its open WebSockets (1001, going away) instead of waiting
for them: aiohttp's graceful shutdown waits for every running handler, and a socket's
handler runs as long as its client stays, so a replica with visitors on it would hang until
its supervisor killed it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import WSCloseCode, web

from bot.app import create_app
from bot.channels.widget_client import WidgetClient
from nlu.process import free_port
from tests.support import backend_settings


async def test_stopping_closes_open_sockets_with_going_away(tmp_path: Path, nlu_url: str) -> None:
    async with backend_settings("sqlite", tmp_path) as s:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        app = create_app(s, nlu_url=nlu_url, public_url=url)
        runner = web.AppRunner(app)  # aiohttp's default: wait up to 60 s for handlers
        await runner.setup()
        stopped = False
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
            c = WidgetClient(url.replace("http", "ws") + "/ws/widget")
            await c.connect()
            await c.say("bao hanh bao lau vay shop")
            await c.bot_reply()
            stopping = asyncio.create_task(runner.cleanup())
            assert await c.closed_by_server(timeout=30) == WSCloseCode.GOING_AWAY
            await asyncio.wait_for(stopping, timeout=30)  # well inside the 60 s it would wait
            stopped = True
            await c.close()
        finally:
            if not stopped:
                await runner.cleanup()
