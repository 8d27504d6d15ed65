"""The gateway: an aiohttp application wiring channels, engine, state and health.

Resources are opened and closed in `cleanup_ctx` order (database, Redis, NLU client, engine,
workers), so shutdown is the exact reverse of startup and a failed start cleans up what it
opened.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.auth import web as auth_web
from bot.auth.accounts import Accounts
from bot.auth.bootstrap import ensure_demo_admin
from bot.auth.sessions import Sessions
from bot.auth.throttle import LoginThrottle
from bot.channels.telegram.channel import TelegramChannel, start_telegram
from bot.channels.widget import WidgetChannel
from bot.conversation.content import Content
from bot.conversation.engine import ConversationEngine
from bot.conversation.safety_check import SafetyCheckTimer
from bot.conversation.worker import InboxWorker
from bot.core.client_address import parse_networks
from bot.core.live.hub import Hub
from bot.core.live.keys import Keys
from bot.core.live.outbound import Outbound
from bot.core.live.redis_conn import RedisHandle, connect
from bot.core.live.streams import Streams
from bot.core.security import TokenSigner, load_secret_key, require_shared_redis
from bot.core.settings import Settings
from bot.core.store.db import Database
from handoff.desk import HelpDesk
from handoff.feed import ConsoleFeed
from handoff.queues import AgentQueues
from handoff.sla import SlaTimers, SlaWatcher
from handoff.triage import Triage
from handoff.web import agent_ws, canned_api, console_api
from handoff.web import api as agent_api
from nlu.client import NLUClient
from surveys.setup import attach_surveys
from surveys.web import add_survey_routes

log = logging.getLogger("careline.gateway")
STATIC = Path(__file__).parent / "static"
DOCS = Path(__file__).parent.parent / "docs"


@dataclass
class Gateway:
    """Everything a request handler may need, created at startup."""

    settings: Settings
    nlu_url: str
    public_url: str
    replica: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    db: Database | None = None
    redis: RedisHandle | None = None
    nlu: NLUClient | None = None
    engine: ConversationEngine | None = None
    widget: WidgetChannel | None = None
    worker: InboxWorker | None = None
    hub: Hub | None = None
    streams: Streams | None = None
    outbound: Outbound | None = None
    desk: HelpDesk | None = None
    surveys: Any = None  # the SurveySweeper (surveys/), running on every replica
    telegram: TelegramChannel | None = None  # None unless careline.telegram.mode is on


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)


async def _resources(app: web.Application) -> AsyncIterator[None]:
    gw = app[GATEWAY]
    s = gw.settings
    gw.db = await asyncio.to_thread(Database.from_settings, s)  # may create the SQLite dir
    await gw.db.migrate()
    require_shared_redis(s)
    gw.redis = connect(s.redis.url, max_connections=s.redis.max_connections)
    client = gw.redis.client
    keys = Keys(s.redis.prefix)
    streams = Streams(client, keys, maxlen=s.redis.stream_maxlen)
    hub = gw.hub = Hub(client, keys, gw.replica)
    gw.streams = streams
    gw.outbound = Outbound(client, keys)
    await hub.start()
    gw.nlu = NLUClient.from_settings(s, base_url=gw.nlu_url)
    # Files are read once at startup, on a thread: the loop never does blocking I/O.
    content = await asyncio.to_thread(
        Content.load,
        s.path(s.nlu.responses),
        s.root / "data" / "intents.yml",
        s.business.placeholders(),
    )
    triage = await asyncio.to_thread(Triage.from_settings, s)
    secret = await asyncio.to_thread(load_secret_key, s)
    queues = AgentQueues.from_settings(client, s)
    gw.engine = ConversationEngine(
        settings=s,
        db=gw.db,
        redis=client,
        streams=streams,
        nlu=gw.nlu,
        content=content,
        triage=triage,
        queues=queues,
        outbound=gw.outbound,
    )
    accounts = Accounts(gw.db, known_queues=s.triage.queues)
    auth = app[auth_web.AUTH]
    auth.accounts = accounts
    auth.sessions = Sessions(client, keys, idle_s=int(s.auth.session_idle_hours * 3600))
    auth.proxies = parse_networks(s.gateway.trusted_proxies)
    auth.throttle = LoginThrottle(
        client,
        keys,
        max_per_user=s.auth.login_max_failures,
        max_per_ip=s.auth.login_max_failures_per_ip,
        window_s=s.auth.login_window_s,
    )
    await ensure_demo_admin(accounts, s, public_url=gw.public_url)
    sla = SlaTimers(client, keys, dict(s.handoff.sla_first_response_s))
    gw.desk = HelpDesk(s, gw.engine, queues, sla, ConsoleFeed(client, keys), accounts)
    gw.desk.attach()
    watcher = SlaWatcher(
        sla, gw.desk.on_breach, every_s=s.handoff.sla_check_every_s, tick=gw.desk.tick
    )
    sla_task = asyncio.create_task(watcher.run(), name="sla-watcher")
    gw.surveys = await attach_surveys(gw.engine, s, gw.db)
    signer = TokenSigner(secret, "widget-visitor", max_age_s=s.widget.visitor_token_days * 86400)
    gw.widget = WidgetChannel(
        settings=s,
        engine=gw.engine,
        db=gw.db,
        streams=streams,
        hub=hub,
        signer=signer,
        own_origin=gw.public_url,
    )
    gw.worker = InboxWorker(
        redis=client,
        streams=streams,
        engine=gw.engine,
        db=gw.db,
        consumer=gw.replica,
        concurrency=s.engine.workers,
        claim_idle_ms=int(s.engine.claim_idle_s * 1000),
        sweep_every_s=s.engine.sweep_every_s,
        sweep_older_than_s=2 * s.engine.claim_idle_s,
    )
    worker_task = asyncio.create_task(gw.worker.run(), name="inbox-worker")
    safety_timer = SafetyCheckTimer(
        gw.engine.safety_checks, gw.engine.safety_question_timeout,
        recover=gw.engine.restore_safety_questions,
        recover_every_s=s.handoff.reconcile_every_s,
    )  # fmt: skip
    safety_task = asyncio.create_task(safety_timer.run(), name="safety-question-timer")
    sweep_task = asyncio.create_task(gw.surveys.run(), name="survey-sweeper")
    try:
        gw.telegram = await start_telegram(  # Telegram channel (issue 5)
            s, gw.engine, gw.db, public_url=gw.public_url, replica=gw.replica, env=os.environ
        )
        yield
    finally:
        if gw.telegram is not None:
            await gw.telegram.stop()
        watcher.stop()
        await sla_task
        safety_timer.stop()
        await safety_task
        await gw.desk.close()
        gw.surveys.stop()
        await asyncio.wait([sweep_task], timeout=5)
        sweep_task.cancel()
        await gw.worker.stop(worker_task)
        await hub.stop()
        await gw.nlu.close()
        await gw.redis.close()
        await gw.db.close()


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


# -- agent console pages (issue 7): the data comes from the agent API and WebSocket ----------


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
    assert gw.desk and gw.hub and gw.streams
    return await agent_ws.handle(request, gw.desk, gw.hub, gw.streams)


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
    app = web.Application(client_max_size=64 * 1024, middlewares=[security_headers])
    app[GATEWAY] = Gateway(settings, nlu_url=nlu_url, public_url=public_url)
    app[auth_web.AUTH] = auth_web.AuthService(cookie_secure=settings.auth.cookie_secure)
    app[agent_api.DESK] = app[GATEWAY]  # the API finds the desk on the gateway
    app.cleanup_ctx.append(_resources)
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
    add_survey_routes(app)
    if settings.telegram.mode == "webhook":
        app.router.add_post(settings.telegram.webhook_path, telegram_webhook)
    return app
