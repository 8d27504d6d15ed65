"""The replica's open WebSockets, so a shutdown closes them instead of waiting for them.

aiohttp's graceful shutdown waits for every running handler, and a WebSocket handler runs as
long as its client stays connected: without this a replica told to stop would hang until its
supervisor killed it. On shutdown each socket is closed with 1001 (going away); widgets and
consoles reconnect to another replica and resume from their cursor, losing nothing."""

from __future__ import annotations

import asyncio
import weakref

from aiohttp import WSCloseCode, web

OPEN_SOCKETS = web.AppKey("open_sockets", weakref.WeakSet[web.WebSocketResponse])


def track(request: web.Request, ws: web.WebSocketResponse) -> None:
    sockets = request.app.get(OPEN_SOCKETS)
    if sockets is not None:
        sockets.add(ws)


async def close_open_sockets(app: web.Application) -> None:
    """on_shutdown: tell every connected client this replica is going away."""
    sockets = list(app.get(OPEN_SOCKETS, ()))
    await asyncio.gather(
        *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down") for ws in sockets),
        return_exceptions=True,  # a client already gone is not an error here
    )


def install(app: web.Application) -> None:
    app[OPEN_SOCKETS] = weakref.WeakSet()
    app.on_shutdown.append(close_open_sockets)


__all__ = ["OPEN_SOCKETS", "close_open_sockets", "install", "track"]
