"""HTTP routes for canned responses (spec: docs/openapi.yaml, "Canned responses").

Every console user may search them; only supervisors (and admins) create, edit or delete.
Writes need the CSRF header like every other state-changing console request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from bot.auth.web import json_error, require_role
from bot.core.vocabulary import LANGS
from handoff.canned import CannedError, CannedInput, CannedResponses, view
from handoff.desk import DeskError
from handoff.web.api import DESK, Handler, _body, _who

log = logging.getLogger("careline.canned")
MAX_QUERY = 200


def _store(request: web.Request) -> CannedResponses:
    desk = request.app[DESK].desk
    if desk is None:
        raise web.HTTPServiceUnavailable(text="starting")
    return CannedResponses(desk.db)


def _id(request: web.Request) -> int:
    raw = request.match_info["canned_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise CannedError(404, "not_found", "no such canned response")
    return int(raw)


def canned_route(*roles: str) -> Callable[[Handler], Handler]:
    """require_role plus CannedError/DeskError → JSON error response."""

    def wrap(handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except (CannedError, DeskError) as e:
                return json_error(e.status, e.code, e.message)

        run.__name__ = handler.__name__
        return require_role(*roles)(run)

    return wrap


@canned_route()
async def search(request: web.Request) -> web.Response:
    query = request.query.get("q", "")[:MAX_QUERY]
    language = request.query.get("language") or None
    if language is not None and language not in LANGS:
        raise CannedError(400, "bad_request", "language must be 'vi' or 'en'")
    rows = await _store(request).search(query, language)
    return web.json_response({"canned": [view(r) for r in rows]})


@canned_route("supervisor")
async def create(request: web.Request) -> web.Response:
    data = CannedInput.parse(await _body(request))
    row = await _store(request).add(data, by=_who(request).id)
    log.info("canned response %s added by %s", row.id, _who(request).username)
    return web.json_response({"canned": view(row)}, status=201)


@canned_route("supervisor")
async def update(request: web.Request) -> web.Response:
    data = CannedInput.parse(await _body(request))
    row = await _store(request).update(_id(request), data, by=_who(request).id)
    log.info("canned response %s edited by %s", row.id, _who(request).username)
    return web.json_response({"canned": view(row)})


@canned_route("supervisor")
async def delete(request: web.Request) -> web.Response:
    canned_id = _id(request)
    await _store(request).delete(canned_id)
    log.info("canned response %s deleted by %s", canned_id, _who(request).username)
    return web.json_response({"ok": True})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/agent/canned", search)
    r.add_post("/api/supervisor/canned", create)
    r.add_put("/api/supervisor/canned/{canned_id}", update)
    r.add_delete("/api/supervisor/canned/{canned_id}", delete)
