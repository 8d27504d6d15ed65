"""The agent-side HTTP API (spec: docs/openapi.yaml). Thin: checks input, calls the desk.

Every route needs a console session (bot/auth); state-changing ones also the CSRF header.
Errors are JSON: {"error": {"code", "message"}} with a fitting status.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import select

from bot.auth.accounts import Principal
from bot.auth.web import json_error, principal_of, require_role
from bot.core.store.models import Escalation
from handoff.card import context_card
from handoff.desk import DeskError, HelpDesk

MAX_TEXT = 4000
MAX_NOTE = 2000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class DeskSlot:
    """Where the console routes find the help desk, set when it opens at startup."""

    desk: HelpDesk | None = None


DESK: web.AppKey[DeskSlot] = web.AppKey("desk", DeskSlot)


def _desk(request: web.Request) -> HelpDesk:
    desk = request.app[DESK].desk
    if desk is None:
        raise web.HTTPServiceUnavailable(text="starting")
    return desk


def _who(request: web.Request) -> Principal:
    return principal_of(request)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except Exception:
        raise DeskError(400, "bad_json", "send a JSON object") from None
    if not isinstance(body, dict):
        raise DeskError(400, "bad_json", "send a JSON object")
    return body


def _text(body: dict[str, Any], key: str, limit: int, *, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise DeskError(400, "bad_request", f"{key} must be a string")
    value = "".join(
        ch for ch in unicodedata.normalize("NFC", value)
        if ch in "\n\t" or unicodedata.category(ch) != "Cc"
    ).strip()  # fmt: skip
    if required and not value:
        raise DeskError(400, "bad_request", f"{key} must not be empty")
    if len(value) > limit:
        raise DeskError(413, "too_long", f"{key} is longer than {limit} characters")
    return value or None


def desk_route(*roles: str) -> Callable[[Handler], Handler]:
    """require_role plus DeskError → JSON error response."""

    def wrap(handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except DeskError as e:
                return json_error(e.status, e.code, e.message)

        run.__name__ = handler.__name__
        return require_role(*roles)(run)

    return wrap


@desk_route()
async def me(request: web.Request) -> web.Response:
    desk, who = _desk(request), _who(request)
    agents = {a.agent_id: a for a in await desk.queues.agents()}
    state = agents.get(who.id)
    return web.json_response(
        {
            "principal": who.as_dict(),
            "presence": state.status if state else "offline",
            "load": state.load if state else 0,
            "chats": await _my_chats(desk, who),
        }
    )


async def _my_chats(desk: HelpDesk, who: Principal) -> list[dict[str, Any]]:
    ids = sorted(await desk.queues.redis.smembers(desk.queues.active_key(who.id)))
    chats = []
    for cid in ids:
        conv = await desk.db.get_conversation(cid)
        if conv is not None:
            chats.append(
                {
                    "conversation_id": cid,
                    "queue": conv.queue,
                    "severity": conv.severity,
                    "channel": conv.channel,
                    "language": conv.language,
                    "state": conv.state,
                }
            )
    return chats


@desk_route()
async def presence(request: web.Request) -> web.Response:
    body = await _body(request)
    await _desk(request).set_presence(_who(request), str(body.get("status")))
    return web.json_response({"status": body.get("status")})


@desk_route()
async def queues(request: web.Request) -> web.Response:
    desk, who = _desk(request), _who(request)
    visible = desk.settings.triage.queues if who.sees_all_queues else desk.skills(who)
    counts = await desk.queues.counts()
    now = time.time()
    out = []
    for name in visible:
        waiting = await desk.queues.waiting(name, limit=100)
        deadlines = await desk.sla.deadlines([w.conversation_id for w in waiting])
        out.append(
            {
                "name": name,
                "count": counts.get(name, 0),
                "waiting": [
                    {
                        "conversation_id": w.conversation_id,
                        "severity": w.severity,
                        "reasons": list(w.reasons),
                        "language": w.language,
                        "channel": w.channel,
                        "note": w.note,
                        "waited_s": round(max(0.0, now - w.enqueued_at), 1),
                        "sla_deadline": deadlines.get(w.conversation_id),
                    }
                    for w in waiting
                ],
            }
        )
    return web.json_response({"queues": out, "now": now})


@desk_route()
async def claim(request: web.Request) -> web.Response:
    body = await _body(request)
    cid = body.get("conversation_id")
    if cid is not None and not isinstance(cid, str):
        raise DeskError(400, "bad_request", "conversation_id must be a string")
    claimed = await _desk(request).claim(_who(request), cid)
    return web.json_response({"conversation_id": claimed})


@desk_route()
async def card(request: web.Request) -> web.Response:
    desk = _desk(request)
    conv = await desk.may_view(_who(request), request.match_info["cid"])
    deadline = await desk.sla.deadline(conv.id)
    return web.json_response(await context_card(desk.db, conv, sla_deadline=deadline))


@desk_route()
async def send(request: web.Request) -> web.Response:
    body = await _body(request)
    text = _text(body, "text", MAX_TEXT)
    client_msg_id = _text(body, "client_msg_id", 100)
    msg = await _desk(request).send(
        _who(request), request.match_info["cid"], text or "", client_msg_id or ""
    )
    return web.json_response({"message": {"id": msg.id, "text": msg.text}}, status=201)


@desk_route()
async def note(request: web.Request) -> web.Response:
    body = await _body(request)
    msg = await _desk(request).note(
        _who(request), request.match_info["cid"], _text(body, "text", MAX_NOTE) or ""
    )
    return web.json_response({"note": {"id": msg.id, "text": msg.text}}, status=201)


@desk_route()
async def transfer(request: web.Request) -> web.Response:
    body = await _body(request)
    await _desk(request).transfer(
        _who(request),
        request.match_info["cid"],
        to_queue=_text(body, "to_queue", 40, required=False),
        to_agent=_text(body, "to_agent", 64, required=False),
        note=_text(body, "note", MAX_NOTE, required=False),
    )
    return web.json_response({"ok": True})


@desk_route()
async def release(request: web.Request) -> web.Response:
    body = await _body(request)
    await _desk(request).release(
        _who(request), request.match_info["cid"], _text(body, "note", MAX_NOTE, required=False)
    )
    return web.json_response({"ok": True})


@desk_route()
async def resolve(request: web.Request) -> web.Response:
    body = await _body(request)
    await _desk(request).resolve(
        _who(request), request.match_info["cid"], _text(body, "note", MAX_NOTE, required=False)
    )
    return web.json_response({"ok": True})


@desk_route("supervisor")
async def agents(request: web.Request) -> web.Response:
    desk = _desk(request)
    live = {a.agent_id: a for a in await desk.queues.agents()}
    out = []
    for account in await desk.accounts.all():
        state = live.get(account.id)
        out.append(
            {
                "id": account.id,
                "username": account.username,
                "display_name": account.display_name,
                "role": account.role,
                "disabled": account.disabled,
                "presence": state.status if state else "offline",
                "load": state.load if state else 0,
                "max_chats": account.max_chats,
                "queues": account.queues,
            }
        )
    return web.json_response({"agents": out})


@desk_route("supervisor")
async def assign(request: web.Request) -> web.Response:
    body = await _body(request)
    await _desk(request).transfer(
        _who(request),
        request.match_info["cid"],
        to_queue=None,
        to_agent=_text(body, "agent_id", 64),
        note=_text(body, "note", MAX_NOTE, required=False),
    )
    return web.json_response({"ok": True})


@desk_route("supervisor")
async def breaches(request: web.Request) -> web.Response:
    desk = _desk(request)
    query = (
        select(Escalation)
        .where(Escalation.kind == "sla_breach")
        .order_by(Escalation.id.desc())  # type: ignore[union-attr]
        .limit(100)
    )
    async with desk.db.sql_sessions() as s:
        rows = list((await s.scalars(query)).all())
    return web.json_response(
        {
            "breaches": [
                {
                    "conversation_id": e.conversation_id,
                    "severity": e.severity,
                    "queue": e.queue,
                    "reason": e.reason,
                    "at": e.created_at.isoformat(),
                }
                for e in rows
            ]
        }
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/agent/me", me)
    r.add_post("/api/agent/presence", presence)
    r.add_get("/api/agent/queues", queues)
    r.add_post("/api/agent/claim", claim)
    r.add_get("/api/agent/conversations/{cid}", card)
    r.add_post("/api/agent/conversations/{cid}/messages", send)
    r.add_post("/api/agent/conversations/{cid}/notes", note)
    r.add_post("/api/agent/conversations/{cid}/transfer", transfer)
    r.add_post("/api/agent/conversations/{cid}/release", release)
    r.add_post("/api/agent/conversations/{cid}/resolve", resolve)
    r.add_get("/api/supervisor/agents", agents)
    r.add_post("/api/supervisor/conversations/{cid}/assign", assign)
    r.add_get("/api/supervisor/breaches", breaches)
