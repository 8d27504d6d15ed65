"""The gateway's resources, each opened and closed by one small `cleanup_ctx` function.

Why this shape (aiohttp's own background-tasks pattern): aiohttp runs the functions in
order up to their `yield` at startup and finishes them in reverse at shutdown, so every
resource is closed after everything that uses it, and a failed start closes exactly what
had been opened. Each function fills its part of the `Gateway` record, which request
handlers and tests read.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import web

from bot.auth import web as auth_web
from bot.auth.accounts import Accounts
from bot.auth.bootstrap import ensure_demo_admin
from bot.auth.sessions import LoginSessions
from bot.auth.throttle import LoginThrottle
from bot.channels.services import LiveServices
from bot.channels.telegram.channel import TelegramChannel, start_telegram
from bot.channels.widget import WidgetChannel
from bot.conversation.content import Content
from bot.conversation.engine import ConversationEngine
from bot.conversation.safety_check import SafetyCheckTimer
from bot.conversation.transcript import TranscriptWriter
from bot.conversation.worker import InboxWorker
from bot.core.client_address import parse_networks
from bot.core.live.hub import Hub
from bot.core.live.keys import Keys
from bot.core.live.outbound import Outbound
from bot.core.live.redis_conn import RedisHandle, connect
from bot.core.live.streams import EventLog, Inbox
from bot.core.live.tasks import stop_loop_and_tasks
from bot.core.security import TokenSigner, load_secret_key, require_shared_redis
from bot.core.settings import Settings
from bot.core.store.db import Database
from handoff.desk import HelpDesk
from handoff.feed import ConsoleFeed
from handoff.line import HandoffLine
from handoff.queues import AgentQueues
from handoff.sla import SlaTimers, SlaWatcher
from handoff.web.api import DESK
from nlu.client import NLUClient
from nlu.triage.triage import Triage
from surveys.flow import SurveyFlow
from surveys.setup import load_survey_flow
from surveys.sweeper import SurveySweeper
from surveys.web import REPORTS

Resource = Callable[[web.Application], AsyncIterator[None]]
T = TypeVar("T")


@dataclass
class Gateway:
    """What the running gateway is made of; each part is set by its resource at startup."""

    settings: Settings
    nlu_url: str
    public_url: str
    replica: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    db: Database | None = None
    redis: RedisHandle | None = None
    keys: Keys | None = None
    event_log: EventLog | None = None
    outbound: Outbound | None = None
    hub: Hub | None = None
    nlu: NLUClient | None = None
    content: Content | None = None
    engine: ConversationEngine | None = None
    line: HandoffLine | None = None
    survey_flow: SurveyFlow | None = None
    desk: HelpDesk | None = None
    surveys: SurveySweeper | None = None  # the sweeper, running on every replica
    widget: WidgetChannel | None = None
    worker: InboxWorker | None = None
    telegram: TelegramChannel | None = None  # None unless careline.telegram.mode is on


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)


def _need(value: T | None, what: str) -> T:
    """A part an earlier resource opened (resources run in RESOURCES order)."""
    if value is None:
        raise RuntimeError(f"startup order: {what} is not open yet")
    return value


async def database(app: web.Application) -> AsyncIterator[None]:
    gw = app[GATEWAY]
    gw.db = await asyncio.to_thread(Database.from_settings, gw.settings)  # may mkdir (SQLite)
    try:
        await gw.db.migrate()
        app[REPORTS].db = gw.db
        yield
    finally:
        await gw.db.close()


async def redis(app: web.Application) -> AsyncIterator[None]:
    gw = app[GATEWAY]
    s = gw.settings
    require_shared_redis(s)
    gw.redis = connect(s.redis.url, max_connections=s.redis.max_connections)
    gw.keys = Keys(s.redis.prefix)
    gw.event_log = EventLog(gw.redis.client, gw.keys, maxlen=s.redis.stream_maxlen)
    gw.outbound = Outbound(gw.redis.client, gw.keys)
    try:
        yield
    finally:
        await gw.redis.close()


async def hub(app: web.Application) -> AsyncIterator[None]:
    gw = app[GATEWAY]
    gw.hub = Hub(_need(gw.redis, "redis").client, _need(gw.keys, "redis"), gw.replica)
    await gw.hub.start()
    try:
        yield
    finally:
        await gw.hub.stop()


async def nlu(app: web.Application) -> AsyncIterator[None]:
    gw = app[GATEWAY]
    gw.nlu = NLUClient.from_settings(gw.settings, base_url=gw.nlu_url)
    try:
        yield
    finally:
        await gw.nlu.close()


async def conversation(app: web.Application) -> AsyncIterator[None]:
    """The core with what it needs: content and triage (files read on a thread, so the loop
    never blocks), the help desk's waiting line, the transcript writer and the survey."""
    gw = app[GATEWAY]
    s = gw.settings
    db, client = _need(gw.db, "database"), _need(gw.redis, "redis").client
    event_log, outbound = _need(gw.event_log, "redis"), _need(gw.outbound, "redis")
    gw.content = await asyncio.to_thread(
        Content.load, s.path(s.nlu.responses), s.root / "data" / "intents.yml",
        s.business.placeholders(),
    )  # fmt: skip
    triage = await asyncio.to_thread(Triage.from_settings, s)
    gw.line = HandoffLine(s, AgentQueues.from_settings(client, s))
    transcript = TranscriptWriter(db, client, event_log, outbound, s.redis.closed_ttl_s)
    gw.survey_flow = await load_survey_flow(s, db, transcript)
    gw.engine = ConversationEngine(
        settings=s, db=db, redis=client, event_log=event_log,
        inbox=Inbox(client, _need(gw.keys, "redis")), nlu=_need(gw.nlu, "nlu"),
        content=gw.content, triage=triage, line=gw.line, transcript=transcript,
        closing=gw.survey_flow,
    )  # fmt: skip
    yield


async def accounts(app: web.Application) -> AsyncIterator[None]:
    """Console accounts and sessions, and the demo admin outside production."""
    gw = app[GATEWAY]
    s, client, keys = gw.settings, _need(gw.redis, "redis").client, _need(gw.keys, "redis")
    auth = app[auth_web.AUTH]
    auth.accounts = Accounts(_need(gw.db, "database"), known_queues=s.triage.queues)
    auth.sessions = LoginSessions(client, keys, idle_s=int(s.auth.session_idle_hours * 3600))
    auth.proxies = parse_networks(s.gateway.trusted_proxies)
    auth.throttle = LoginThrottle(
        client, keys, max_per_user=s.auth.login_max_failures,
        max_per_ip=s.auth.login_max_failures_per_ip, window_s=s.auth.login_window_s,
    )  # fmt: skip
    await ensure_demo_admin(auth.accounts, s, public_url=gw.public_url)
    yield


async def desk(app: web.Application) -> AsyncIterator[None]:
    """The help desk, listening to the core, and its SLA watcher (which also ticks it)."""
    gw = app[GATEWAY]
    s, client, keys = gw.settings, _need(gw.redis, "redis").client, _need(gw.keys, "redis")
    sla = SlaTimers(client, keys, dict(s.handoff.sla_first_response_s))
    account_book = _need(app[auth_web.AUTH].accounts, "accounts")
    gw.desk = HelpDesk(
        s, _need(gw.engine, "conversation"), _need(gw.line, "conversation"),
        _need(gw.db, "database"), _need(gw.event_log, "redis"), sla, ConsoleFeed(client, keys),
        account_book,
    )  # fmt: skip
    gw.desk.attach()
    app[DESK].desk = gw.desk
    watcher = SlaWatcher(
        sla, gw.desk.on_breach, every_s=s.handoff.sla_check_every_s, tick=gw.desk.tick
    )
    task = asyncio.create_task(watcher.run(), name="sla-watcher")
    try:
        yield
    finally:
        watcher.stop()
        await task
        await gw.desk.close()


async def surveys(app: web.Application) -> AsyncIterator[None]:
    gw = app[GATEWAY]
    engine = _need(gw.engine, "conversation")
    gw.surveys = SurveySweeper(
        _need(gw.survey_flow, "conversation"), engine.end, engine.redis, engine.keys
    )
    task = asyncio.create_task(gw.surveys.run(), name="survey-sweeper")
    try:
        yield
    finally:
        gw.surveys.stop()
        await stop_loop_and_tasks(task, set(), grace_s=5.0)


async def widget(app: web.Application) -> AsyncIterator[None]:
    gw = app[GATEWAY]
    s = gw.settings
    secret = await asyncio.to_thread(load_secret_key, s)
    signer = TokenSigner(secret, "widget-visitor", max_age_s=s.widget.visitor_token_days * 86400)
    gw.widget = WidgetChannel(
        settings=s, engine=_need(gw.engine, "conversation"), db=_need(gw.db, "database"),
        event_log=_need(gw.event_log, "redis"), hub=_need(gw.hub, "hub"), signer=signer,
        own_origin=gw.public_url,
    )  # fmt: skip
    yield


async def inbox(app: web.Application) -> AsyncIterator[None]:
    """Where turns run: on arrival (the engine) and from the inbox (its worker, which
    answers on any replica what could not be answered where it arrived)."""
    gw = app[GATEWAY]
    cfg = gw.settings.conversation
    engine = _need(gw.engine, "conversation")
    gw.worker = InboxWorker(
        redis=_need(gw.redis, "redis").client, inbox=engine.inbox, engine=engine,
        db=_need(gw.db, "database"), consumer=gw.replica, slots=engine.turn_slots,
        concurrency=cfg.workers,
        claim_idle_ms=int(cfg.claim_idle_s * 1000), sweep_every_s=cfg.sweep_every_s,
        sweep_older_than_s=2 * cfg.claim_idle_s,
    )  # fmt: skip
    task = asyncio.create_task(gw.worker.run(), name="inbox-worker")
    try:
        yield
    finally:
        await engine.stop_turns()
        await gw.worker.stop(task)


async def safety_timer(app: web.Application) -> AsyncIterator[None]:
    """Unanswered safety questions escalate at their deadline; lost ones come back from SQL."""
    gw = app[GATEWAY]
    engine = _need(gw.engine, "conversation")
    timer = SafetyCheckTimer(
        engine.safety_checks, engine.safety_question_timeout,
        recover=engine.restore_safety_questions,
        recover_every_s=gw.settings.handoff.reconcile_every_s,
    )  # fmt: skip
    task = asyncio.create_task(timer.run(), name="safety-question-timer")
    try:
        yield
    finally:
        timer.stop()
        await task


async def telegram(app: web.Application) -> AsyncIterator[None]:
    gw = app[GATEWAY]
    live = LiveServices(
        _need(gw.redis, "redis").client, _need(gw.keys, "redis"),
        _need(gw.outbound, "redis"), _need(gw.content, "conversation"),
    )  # fmt: skip
    gw.telegram = await start_telegram(
        gw.settings, _need(gw.engine, "conversation"), live, _need(gw.db, "database"),
        public_url=gw.public_url, replica=gw.replica, env=os.environ,
    )  # fmt: skip
    try:
        yield
    finally:
        if gw.telegram is not None:
            await gw.telegram.stop()


# Startup order; shutdown runs it backwards (consumers stop before what they consume).
RESOURCES: tuple[Resource, ...] = (
    database, redis, hub, nlu, conversation, accounts, desk, surveys, widget, inbox,
    safety_timer, telegram,
)  # fmt: skip


__all__ = ["GATEWAY", "RESOURCES", "Gateway"]
