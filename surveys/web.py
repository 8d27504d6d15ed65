"""Manager pages and JSON for surveys: the dashboard, the report and the exports.

Every route goes through `manager_only` (managers and admins; bot/auth). Query parameters
are validated by `Scope.parse`: a bad date or filter is a 400 with a clear message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from bot.auth.web import principal_of, require_role
from bot.core.settings import Settings
from bot.core.store.db import Database
from surveys.export import FORMATS, csv_chunks, write_xlsx
from surveys.reports import Scope, ScopeError, filter_options, survey_report

log = logging.getLogger("careline.surveys")
STATIC = Path(__file__).resolve().parent.parent / "bot" / "static"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
)
MANAGER_ROLES = ("manager", "admin")


def manager_only(*, page: bool = False) -> Callable[[Handler], Handler]:
    """The one access check for every survey route: managers and admins (bot/auth)."""
    return require_role(*MANAGER_ROLES, page=page)


@dataclass
class ReportSource:
    """What the report routes read: the settings, and the database once it is open."""

    settings: Settings
    db: Database | None = None

    def database(self) -> Database:
        if self.db is None:
            raise web.HTTPServiceUnavailable(text="starting")
        return self.db


REPORTS: web.AppKey[ReportSource] = web.AppKey("survey_reports", ReportSource)


def _source(request: web.Request) -> ReportSource:
    source = request.app[REPORTS]
    source.database()  # 503 until the database is open
    return source


def _scope(request: web.Request) -> Scope:
    source = _source(request)
    try:
        return Scope.parse(request.query, source.settings.surveys.report_timezone)
    except ScopeError as e:
        raise web.HTTPBadRequest(
            text=f'{{"error":{{"code":"bad_scope","message":{_json_str(str(e))}}}}}',
            content_type="application/json",
        ) from None


def _json_str(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)


@manager_only(page=True)
async def dashboard_page(request: web.Request) -> web.StreamResponse:
    resp = web.FileResponse(STATIC / "dashboard.html")
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["Cache-Control"] = "no-store"
    return resp


async def dashboard_asset(request: web.Request) -> web.StreamResponse:
    """dashboard.js / dashboard.css: public code, no data (the data is role-checked)."""
    name = request.match_info["name"]
    types = {"dashboard.js": "application/javascript", "dashboard.css": "text/css"}
    if name not in types:
        raise web.HTTPNotFound()
    resp = web.FileResponse(STATIC / name)
    resp.headers["Content-Type"] = f"{types[name]}; charset=utf-8"
    resp.headers["Cache-Control"] = "no-cache"
    return resp


@manager_only()
async def report_json(request: web.Request) -> web.Response:
    source = _source(request)
    scope = _scope(request)
    report = await survey_report(source.database(), source.settings, scope)
    if request.query.get("options") == "1":
        report["options"] = await filter_options(source.database())
    return web.json_response(report, headers={"Cache-Control": "no-store"})


@manager_only()
async def export_file(request: web.Request) -> web.StreamResponse:
    source = _source(request)
    scope = _scope(request)
    fmt = request.query.get("format", "csv")
    if fmt not in FORMATS:
        raise web.HTTPBadRequest(
            text='{"error":{"code":"bad_format","message":"format must be csv or xlsx"}}',
            content_type="application/json",
        )
    name = f"surveys_{scope.start}_{scope.end}.{fmt}"
    who = principal_of(request).username
    log.info("survey export %s by %s: %s", fmt, who, scope.as_dict())
    if fmt == "csv":
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "no-store",
            }
        )
        await resp.prepare(request)
        async for chunk in csv_chunks(source.database(), scope):
            await resp.write(chunk)
        await resp.write_eof()
        return resp
    return await _xlsx_response(request, source, scope, name)


async def _xlsx_response(
    request: web.Request, source: ReportSource, scope: Scope, name: str
) -> web.StreamResponse:
    """XLSX is a zip: it is built in a temporary file, streamed, and removed."""
    fd, tmp = await asyncio.to_thread(tempfile.mkstemp, suffix=".xlsx", prefix="careline-export-")
    await asyncio.to_thread(os.close, fd)
    path = Path(tmp)
    try:
        await write_xlsx(source.database(), scope, path)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "no-store",
            }
        )
        await resp.prepare(request)
        f = await asyncio.to_thread(path.open, "rb")
        try:
            while chunk := await asyncio.to_thread(f.read, 256 * 1024):
                await resp.write(chunk)
        finally:
            await asyncio.to_thread(f.close)
        await resp.write_eof()
        return resp
    finally:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(path.unlink)


def add_survey_routes(app: web.Application, source: ReportSource) -> None:
    """The manager's dashboard and exports; `source.db` is set when the database opens."""
    app[REPORTS] = source
    app.router.add_get("/manager/dashboard", dashboard_page)
    app.router.add_get("/manager/static/{name}", dashboard_asset)
    app.router.add_get("/api/reports/surveys", report_json)
    app.router.add_get("/api/reports/surveys/export", export_file)
