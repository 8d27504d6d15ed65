"""Test helpers shared by several test packages: real Redis/SQL settings and an in-process
gateway. Fixtures that use them live in tests/conftest.py."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from bot.core.settings import OpeningHours, Settings, load_settings
from bot.core.store.db import Database
from bot.core.store.scratch import temporary_schema
from nlu.process import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", "postgresql"]


@asynccontextmanager
async def pg_schema() -> AsyncIterator[str]:
    """A fresh PostgreSQL schema, dropped afterwards; an unreachable server fails the test."""
    async with AsyncExitStack() as stack:
        try:  # only setting up is translated; errors inside the test stay what they are
            name = await stack.enter_async_context(temporary_schema(PG_URL, "t"))
        except (OSError, asyncpg.PostgresError, TimeoutError) as e:
            pytest.fail(
                f"PostgreSQL is required at {PG_URL} but is unreachable: {e!r} "
                "(scripts/ensure-services.sh starts it when installed)",
                pytrace=False,
            )
        yield name


@asynccontextmanager
async def backend_settings(
    backend: str, tmp_path: Path, **conversation: Any
) -> AsyncIterator[Settings]:
    """Project settings pointed at real Redis (own prefix) and the chosen SQL backend, with
    any `careline.conversation` fields given replaced."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    env = {"REDIS_URL": REDIS_URL, "CARELINE_REDIS_PREFIX": prefix}
    if backend == "sqlite":
        db_file = tmp_path / "careline.db"
        await asyncio.to_thread(shutil.copyfile, await _migrated_sqlite(), db_file)
        env["DATABASE_URL"] = f"sqlite+aiosqlite:///{db_file}"
        s = load_settings(env=env)
        yield _with(s, conversation)
        return
    async with pg_schema() as schema:
        env["DATABASE_URL"] = PG_URL
        s = load_settings(env=env)
        s = s.model_copy(update={"database": s.database.model_copy(update={"pg_schema": schema})})
        yield _with(s, conversation)


_SQLITE_TEMPLATE: Path | None = None


async def _migrated_sqlite() -> Path:
    """An SQLite database at the newest schema, migrated once per test session: each test
    starts from a copy, and its gateway's own migrate() finds nothing to do."""
    global _SQLITE_TEMPLATE
    if _SQLITE_TEMPLATE is None:
        path = Path(tempfile.mkdtemp(prefix="careline-template-")) / "template.db"
        db = Database(f"sqlite+aiosqlite:///{path}")
        try:
            await db.migrate()
        finally:
            await db.close()
        _SQLITE_TEMPLATE = path
    return _SQLITE_TEMPLATE


def _with(s: Settings, conversation: dict[str, Any]) -> Settings:
    # People "work" around the clock in tests, so what a test sees never depends on the time
    # of day it runs; tests of opening hours set their own (with_section "handoff").
    s = with_section(s, "handoff", opening_hours=OpeningHours(start="00:00", end="24:00"))
    # Tests make the accounts they use; the demo admin's random password would only cost an
    # argon2 hash per gateway start (tests/handoff/test_auth.py tests it on its own).
    s = with_section(s, "auth", demo_admin=False)
    return with_section(s, "conversation", **conversation) if conversation else s


def with_section(s: Settings, section: str, **fields: Any) -> Settings:
    """A copy of the settings with some fields of one section replaced."""
    current = getattr(s, section)
    return s.model_copy(update={section: current.model_copy(update=fields)})


# -- the gateway ------------------------------------------------------------------------------


@dataclass
class RunningGateway:
    url: str
    app: web.Application
    settings: Settings

    @property
    def ws_url(self) -> str:
        return self.url + "/ws/widget"

    @property
    def gw(self) -> Any:
        from bot.startup import GATEWAY

        return self.app[GATEWAY]


@asynccontextmanager
async def running_gateway(
    settings: Settings, nlu_url: str, *, replica: str | None = None
) -> AsyncIterator[RunningGateway]:
    """The real gateway app on a free loopback port, in this process. Give two gateways on
    the same settings different `replica` names to have two replicas of one deployment."""
    from bot.app import create_app
    from bot.startup import GATEWAY

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(settings, nlu_url=nlu_url, public_url=url)
    if replica:
        app[GATEWAY].replica = replica
    runner = web.AppRunner(app)
    try:  # a failed start closes what it had opened (runner.cleanup runs the cleanup_ctx)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield RunningGateway(url, app, settings)
    finally:
        await runner.cleanup()


def screenshot_dir() -> Path:
    """Where browser tests save their screenshots: a temporary folder, so a test run leaves
    the checkout as it was; docs/screenshots only when CARELINE_REFRESH_SCREENSHOTS=1 (to
    refresh the pictures in the docs on purpose)."""
    if os.environ.get("CARELINE_REFRESH_SCREENSHOTS") == "1":
        path = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
    else:
        path = Path(tempfile.gettempdir()) / "careline-screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


class OwnRedis:
    """A redis-server of the test's own (never the shared one), without persistence, so a
    restart loses everything, as a real one configured that way would."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        try:
            for _ in range(100):
                try:
                    if await client.ping():
                        return
                except Exception:
                    await asyncio.sleep(0.05)
            raise RuntimeError(f"own redis-server on port {self.port} did not come up")
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    async def restart(self) -> None:
        self.stop()
        await self.start()


@asynccontextmanager
async def own_redis() -> AsyncIterator[OwnRedis]:
    from nlu.process import free_port

    server = OwnRedis(free_port())
    await server.start()
    try:
        yield server
    finally:
        server.stop()


class TcpLink:
    """A TCP forwarder in front of a real server that a test can cut and restore: the
    gateway loses its database the way it would in an outage (open connections reset, new
    ones refused), while the shared server itself is never touched."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()  # a reset, as when the server goes away
        self._writers.clear()


@asynccontextmanager
async def tcp_link(target_host: str, target_port: int) -> AsyncIterator[TcpLink]:
    link = TcpLink(target_host, target_port)
    await link.restore()
    try:
        yield link
    finally:
        await link.cut()


# -- a slow NLU -------------------------------------------------------------------------------


@asynccontextmanager
async def slow_nlu(target: str, delay_s: float) -> AsyncIterator[str]:
    """A proxy in front of the NLU service that holds every parse for `delay_s`: turns take
    long enough for a test to kill a replica in one, or to make a line of them."""

    async def forward(request: web.Request) -> web.Response:
        if request.method == "POST":
            await asyncio.sleep(delay_s)
        async with aiohttp.ClientSession() as http, http.request(
            request.method, target + request.path_qs, data=await request.read(),
            headers={"Content-Type": request.content_type},
        ) as r:  # fmt: skip
            return web.Response(status=r.status, body=await r.read(), content_type=r.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
