"""Small read-only routes the console pages need beyond the agent API (docs/openapi.yaml).

- `GET /api/agent/config`: configured queue names (agents transfer to queues they do not
  serve, so the page needs them all) and the presence heartbeat interval.
- `GET /api/supervisor/chats`: every chat waiting for or held by a person, so the supervisor
  view can reassign held chats too (the queues only list waiting ones).
"""

from __future__ import annotations

from aiohttp import web

from bot.core.vocabulary import LANGS, State
from handoff.web.api import _desk, desk_route

HEARTBEAT_S = 20  # the agent WebSocket's presence heartbeat (presence TTL is 60 s by default)
MAX_CHATS = 500


@desk_route()
async def console_config(request: web.Request) -> web.Response:
    s = _desk(request).settings
    return web.json_response(
        {
            "queues": list(s.triage.queues),
            "languages": list(LANGS),
            "heartbeat_s": min(HEARTBEAT_S, max(1.0, s.handoff.presence_ttl_s / 3)),
        }
    )


@desk_route("supervisor")
async def active_chats(request: web.Request) -> web.Response:
    desk = _desk(request)
    convs = await desk.db.list_conversations(
        states=[State.WAITING_AGENT.value, State.WITH_AGENT.value], limit=MAX_CHATS
    )
    deadlines = await desk.sla.deadlines([c.id for c in convs])
    return web.json_response(
        {
            "chats": [
                {
                    "conversation_id": c.id,
                    "state": c.state,
                    "queue": c.queue,
                    "severity": c.severity,
                    "channel": c.channel,
                    "language": c.language,
                    "agent_id": c.agent_id,
                    "escalated_at": c.escalated_at.isoformat() if c.escalated_at else None,
                    "sla_deadline": deadlines.get(c.id),
                }
                for c in convs
            ]
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/agent/config", console_config)
    app.router.add_get("/api/supervisor/chats", active_chats)
