"""The gateway's routes: pages, the channels' endpoints, the console and manager APIs,
health and metrics. What runs behind them is opened and closed by bot/startup.py.

This is the top of the wiring and the `careline` command (`main`): it hands its factory to
the command line, so no module imports it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot import cli
from bot.auth import web as auth_web
from bot.core.live import sockets
from bot.core.settings import Settings
from bot.core.store.db import STORE_UNREACHABLE
from bot.startup import GATEWAY, RESOURCES, Gateway
from handoff.web import agent_ws, canned_api, console_api
from handoff.web import api as agent_api
from surveys.web import ReportSource, add_survey_routes

log = logging.getLogger("careline.gateway")
STATIC = Path(__file__).parent / "static"
DOCS = Path(__file__).parent.parent / "docs"


# For any page served without a policy of its own (e.g. /static/console.html fetched
# directly): the strictest one our pages live with.
DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'"
)


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    resp = await handler(request)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    if request.path.endswith((".html", ".htm")) or resp.content_type == "text/html":
        resp.headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
    return resp


@web.middleware
async def store_outage(request: web.Request, handler: Any) -> web.StreamResponse:
    """An API call that could not reach the database answers 503 with a JSON error and
    Retry-After, which consoles and clients retry, instead of a bare 500 page."""
    try:
        return await handler(request)
    except STORE_UNREACHABLE as e:
        # Not for pages, nor once a streamed answer (an export) has begun: its bytes are out.
        if not request.path.startswith("/api/") or request.writer.output_size > 0:
            raise
        log.warning("%s %s: the database is unreachable: %r", request.method, request.path, e)
        return auth_web.json_error(
            503,
            "unavailable",
            "the service is unavailable for a moment; please try again shortly",
            **{"Retry-After": "5"},
        )


async def demo_page(request: web.Request) -> web.StreamResponse:
    resp = web.FileResponse(STATIC / "demo.html")
    resp.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'"
    )
    return resp


async def widget_js(request: web.Request) -> web.StreamResponse:
    resp = web.FileResponse(STATIC / "widget.js")
    resp.headers["Content-Type"] = "application/javascript; charset=utf-8"
    resp.headers["Cache-Control"] = "public, max-age=300"
    resp.headers["Access-Control-Allow-Origin"] = "*"  # embeddable from any allowed site
    return resp


# -- agent console pages: the data comes from the agent API and WebSocket ----------


@auth_web.require_role(page=True)
async def console_page(request: web.Request) -> web.StreamResponse:
    return _page("console.html")


@auth_web.require_role("supervisor", page=True)
async def supervisor_page(request: web.Request) -> web.StreamResponse:
    return _page("supervisor.html")


async def login_page(request: web.Request) -> web.StreamResponse:
    return _page("login.html")


def _page(name: str) -> web.StreamResponse:
    """A console-side page: strict CSP (scripts and styles from us only, no inline script)."""
    resp = web.FileResponse(STATIC / name)
    resp.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; frame-ancestors 'none'; form-action 'self'; "
        "base-uri 'none'"
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp


async def openapi_doc(request: web.Request) -> web.StreamResponse:
    resp = web.FileResponse(DOCS / "openapi.yaml")
    resp.headers["Content-Type"] = "application/yaml; charset=utf-8"
    return resp


async def ws_agent(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    assert gw.desk and gw.hub and gw.event_log
    return await agent_ws.handle(request, gw.desk, gw.hub, gw.event_log)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "replica": request.app[GATEWAY].replica})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the database and Redis answer; NLU health is reported, not required
    (without it the bot hands customers to people instead of failing)."""
    gw = request.app[GATEWAY]
    checks: dict[str, bool] = {}
    checks["database"] = bool(gw.db and await gw.db.ping())
    try:
        checks["redis"] = bool(gw.redis and await asyncio.wait_for(gw.redis.client.ping(), 2))
    except Exception:
        checks["redis"] = False
    checks["nlu"] = bool(gw.nlu and await gw.nlu.ready())
    ok = checks["database"] and checks["redis"]
    body = {"status": "ready" if ok else "not ready", "checks": checks}
    return web.json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def ws_widget(request: web.Request) -> web.StreamResponse:
    widget = request.app[GATEWAY].widget
    assert widget is not None
    return await widget.handle(request)


async def telegram_webhook(request: web.Request) -> web.StreamResponse:
    telegram = request.app[GATEWAY].telegram
    if telegram is None:
        raise web.HTTPNotFound()
    return await telegram.handle_webhook(request)


def create_app(settings: Settings, *, nlu_url: str, public_url: str) -> web.Application:
    app = web.Application(client_max_size=64 * 1024, middlewares=[security_headers, store_outage])
    app[GATEWAY] = Gateway(settings, nlu_url=nlu_url, public_url=public_url)
    app[auth_web.AUTH] = auth_web.AuthService(cookie_secure=settings.auth.cookie_secure)
    app[agent_api.DESK] = agent_api.DeskSlot()  # filled when the desk opens
    app.cleanup_ctx.extend(RESOURCES)
    sockets.install(app)  # a shutdown closes open WebSockets instead of waiting on them
    app.router.add_get("/", demo_page)
    app.router.add_get("/widget.js", widget_js)
    app.router.add_get("/ws/widget", ws_widget)
    app.router.add_get("/console", console_page)
    app.router.add_get("/console/supervisor", supervisor_page)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.router.add_get("/ws/agent", ws_agent)
    app.router.add_get("/api/openapi.yaml", openapi_doc)
    auth_web.add_routes(app, login_page)
    agent_api.add_routes(app)
    canned_api.add_routes(app)
    console_api.add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    add_survey_routes(app, ReportSource(settings))
    if settings.telegram.mode == "webhook":
        app.router.add_post(settings.telegram.webhook_path, telegram_webhook)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """The `careline` command: its subcommands, `run` serving this application."""
    return cli.main(argv, app_factory=create_app)


if __name__ == "__main__":
    sys.exit(main())
