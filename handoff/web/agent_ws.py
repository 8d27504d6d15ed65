"""The agent console's WebSocket: live console events and the chats an agent watches.

Protocol (JSON text frames; see docs/openapi.yaml, "Agent WebSocket"):

  client → server  {"type": "watch", "conversation_id": ..., "after": <event id>?}
                   {"type": "unwatch", "conversation_id": ...}
                   {"type": "typing", "conversation_id": ..., "on": true|false}
                   {"type": "heartbeat"}   keeps the agent's presence fresh
  server → client  {"type": "hello", "principal": {...}}
                   {"type": "console", "event": {"kind": "escalated"|"claimed"|..., ...}}
                   {"type": "watching", "conversation_id": ..., "last_event_id": ...}
                   {"type": "event", "conversation_id": ..., "eid": ..., "event": {...}}
                   {"type": "typing", "conversation_id": ..., "who": "customer", "on": ...}
                   {"type": "error", "code": ..., "message": ...}

Any replica serves any agent: console events and conversation wake-ups travel over Redis
Pub/Sub (bot/core/live/hub.py), events are read from the conversation's Redis stream, so a
customer on replica A and an agent on replica B see each other's messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from bot.auth.accounts import Principal
from bot.auth.web import AUTH, COOKIE, same_origin
from bot.core import wire_json
from bot.core.live import sockets
from bot.core.live.hub import Hub
from bot.core.live.streams import EventLog, already_sent, carried_event
from bot.core.metrics import AGENT_CONNECTIONS
from handoff.desk import DeskError, HelpDesk

log = logging.getLogger("careline.agent_ws")
MAX_FRAME = 4096
MAX_WATCHED = 50
RECHECK_S = 5.0  # the session is re-checked at least this often, frames or not
HANDOVERS = frozenset({"claimed", "assigned", "transferred", "released", "resolved"})


class AgentSocket:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        who: Principal,
        desk: HelpDesk,
        hub: Hub,
        event_log: EventLog,
        current: Callable[[], Awaitable[Principal | None]] | None = None,
        revoked_channel: str | None = None,
    ) -> None:
        # Who this socket speaks for, reloaded from the session and the account on every
        # frame, on a timer, and at once when a session of the account ends anywhere.
        self.current = current
        self.revoked_channel = revoked_channel
        self.ws = ws
        self.who = who
        self.desk = desk
        self.hub = hub
        self.event_log = event_log
        self.send_lock = asyncio.Lock()
        self.watched: dict[str, tuple[asyncio.Queue[dict[str, Any]], asyncio.Task[None]]] = {}
        self.cursors: dict[str, str] = {}
        self.flush_locks: dict[str, asyncio.Lock] = {}

    async def send(self, frame: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        async with self.send_lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(wire_json.dumps(frame))

    async def run(self) -> None:
        feed = await self.hub.subscribe_channel(self.desk.feed.channel)
        relay = asyncio.create_task(self._relay_console(feed), name="agent-console-feed")
        revoked = None
        if self.revoked_channel:
            revoked = await self.hub.subscribe_channel(self.revoked_channel)
        guard = asyncio.create_task(self._guard(revoked), name="agent-socket-guard")
        await self.send({"type": "hello", "principal": self.who.as_dict()})
        try:
            async for msg in self.ws:
                if not await self._authorized():
                    break
                if msg.type != WSMsgType.TEXT:
                    await self.send(_error("bad_frame", "send JSON text frames"))
                    continue
                await self._frame(msg.data)
        finally:
            relay.cancel()
            guard.cancel()
            await self.hub.unsubscribe_channel(self.desk.feed.channel, feed)
            if revoked is not None and self.revoked_channel:
                await self.hub.unsubscribe_channel(self.revoked_channel, revoked)
            for cid in list(self.watched):
                await self._unwatch(cid)

    async def _authorized(self) -> bool:
        """Still signed in (not logged out anywhere, not disabled, password unchanged)? The
        principal is reloaded, so a role or queue change applies at once. If not: the
        socket is closed, and nothing more is sent on it."""
        if self.current is None:
            return True
        who = await self.current()
        if who is None:
            if not self.ws.closed:
                await self.send(_error("unauthenticated", "your session has ended"))
                await self.ws.close(code=4401, message=b"session ended")
            return False
        self.who = who
        return True

    async def _guard(self, revoked: asyncio.Queue[dict[str, Any]] | None) -> None:
        """Re-check the session every RECHECK_S, and at once on a revocation of this
        account announced by any replica."""
        while not self.ws.closed:
            try:
                if revoked is None:
                    await asyncio.sleep(RECHECK_S)
                else:
                    note = await asyncio.wait_for(revoked.get(), timeout=RECHECK_S)
                    if note.get("account") != self.who.id:
                        continue
            except TimeoutError:
                pass
            if not await self._authorized():
                return

    async def _frame(self, data: str) -> None:
        if len(data) > MAX_FRAME:
            await self.send(_error("too_large", f"frames are at most {MAX_FRAME} bytes"))
            return
        try:
            frame = json.loads(data)
            kind = frame["type"]
        except (ValueError, KeyError, TypeError):
            await self.send(_error("bad_json", 'send {"type": ...} objects'))
            return
        try:
            if kind == "watch":
                await self._watch(_cid(frame), frame.get("after"))
            elif kind == "unwatch":
                await self._unwatch(_cid(frame))
            elif kind == "typing":
                cid = _cid(frame)
                if cid in self.watched:
                    on = bool(frame.get("on"))
                    await self.event_log.signal(cid, {"typing": {"who": "agent", "on": on}})
            elif kind == "heartbeat":
                await self.desk.heartbeat(self.who)
            elif kind == "ping":
                await self.send({"type": "pong"})
            else:
                await self.send(_error("unknown_type", f"unknown frame type {kind!r}"))
        except DeskError as e:
            await self.send(_error(e.code, e.message))

    async def _relay_console(self, feed: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            event = await feed.get()
            mine = set(self.desk.skills(self.who))  # the reloaded principal's queues
            if self.who.sees_all_queues or _concerns(event, self.who.id, mine):
                await self.send({"type": "console", "event": event})
            cid = event.get("conversation_id")
            if cid in self.watched and event.get("kind") in HANDOVERS:
                await self._recheck(cid)

    async def _recheck(self, cid: str) -> None:
        """A watched chat changed hands: stop streaming it to someone no longer allowed."""
        try:
            await self.desk.may_view(self.who, cid)
        except DeskError:
            await self._unwatch(cid)
            await self.send({"type": "unwatched", "conversation_id": cid, "reason": "forbidden"})

    async def _watch(self, cid: str, after: Any) -> None:
        if cid in self.watched:
            return
        if len(self.watched) >= MAX_WATCHED:
            raise DeskError(429, "too_many", f"watch at most {MAX_WATCHED} chats at once")
        if after is not None and not (isinstance(after, str) and _EVENT_ID.match(after)):
            raise DeskError(400, "bad_request", "after must be an event id such as 1700000000000-0")
        await self.desk.may_view(self.who, cid)
        q = await self.hub.subscribe(cid)  # before reading the cursor: no gap
        if isinstance(after, str) and after:
            self.cursors[cid] = after
        else:
            self.cursors[cid] = await self.event_log.last_id(cid)
        await self.send(
            {"type": "watching", "conversation_id": cid, "last_event_id": self.cursors[cid]}
        )
        task = asyncio.create_task(self._deliver(cid, q), name=f"agent-watch-{cid}")
        self.watched[cid] = (q, task)
        await self._flush(cid)

    async def _unwatch(self, cid: str) -> None:
        entry = self.watched.pop(cid, None)
        if entry is None:
            return
        q, task = entry
        task.cancel()
        await self.hub.unsubscribe(cid, q)
        self.cursors.pop(cid, None)
        self.flush_locks.pop(cid, None)

    async def _deliver(self, cid: str, q: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            note = await q.get()
            typing = note.get("typing")
            if typing:
                if typing.get("who") == "customer":
                    await self.send(
                        {
                            "type": "typing",
                            "conversation_id": cid,
                            "who": "customer",
                            "on": bool(typing.get("on")),
                        }
                    )
                continue
            async with self.flush_locks.setdefault(cid, asyncio.Lock()):
                cursor = self.cursors.get(cid)
                if cursor is None or already_sent(note, cursor):
                    continue
                carried = carried_event(note, cursor)
                if carried is None:
                    await self._flush_unlocked(cid)
                    continue
                eid, event = carried
                await self.send(
                    {"type": "event", "conversation_id": cid, "eid": eid, "event": event}
                )
                self.cursors[cid] = eid

    async def _flush(self, cid: str) -> None:
        # One flush at a time per chat: two would send the same events twice.
        async with self.flush_locks.setdefault(cid, asyncio.Lock()):
            await self._flush_unlocked(cid)

    async def _flush_unlocked(self, cid: str) -> None:
        while cid in self.cursors:
            events = await self.event_log.after(cid, self.cursors[cid])
            for eid, event in events:
                await self.send(
                    {"type": "event", "conversation_id": cid, "eid": eid, "event": event}
                )
                self.cursors[cid] = eid
            if len(events) < 500:
                return


_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")  # a Redis stream id


def _cid(frame: dict[str, Any]) -> str:
    cid = frame.get("conversation_id")
    if not isinstance(cid, str) or not 0 < len(cid) <= 64:
        raise DeskError(400, "bad_request", "conversation_id must be a string")
    return cid


def _error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def _concerns(event: dict[str, Any], agent_id: str, queues: set[str]) -> bool:
    return event.get("agent_id") == agent_id or event.get("queue") in queues


async def handle(request: web.Request, desk: HelpDesk, hub: Hub, event_log: EventLog) -> Any:
    """Upgrade after checking the session and that the page is ours (no cross-site sockets)."""
    if not same_origin(request):
        raise web.HTTPForbidden(text="cross-site WebSocket refused")
    auth = request.app[AUTH]
    found = await auth.principal(request)
    if found is None:
        raise web.HTTPUnauthorized(text="log in first")
    cookie = request.cookies.get(COOKIE)

    async def current() -> Principal | None:
        now = await auth.principal_for_cookie(cookie)
        return now[0] if now else None

    ws = web.WebSocketResponse(heartbeat=25, max_msg_size=MAX_FRAME * 4)
    await ws.prepare(request)
    sockets.track(request, ws)
    AGENT_CONNECTIONS.inc()
    revoked = auth.sessions.revoked_channel if auth.sessions else None
    try:
        await AgentSocket(ws, found[0], desk, hub, event_log, current, revoked).run()
    finally:
        AGENT_CONNECTIONS.dec()
    return ws
