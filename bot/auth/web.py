"""Console authentication for aiohttp: login/logout routes, `require_role`, CSRF.

- Sessions are opaque ids in a `careline_session` cookie: HttpOnly (scripts can't read it),
  SameSite=Strict (other sites can't ride it), Secure in production or over HTTPS.
- Every state-changing request (POST/PUT/PATCH/DELETE) must carry the session's CSRF token in
  `X-CSRF-Token`; pages get it from `GET /api/auth/session`. Login itself has no session yet,
  so it checks that the Origin, when sent, is our own.
- `require_role(*roles)` wraps a handler: 401 without a session (or a redirect to /login for
  pages), 403 with the wrong role. Admins pass every check. The principal is then
  `principal_of(request)`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from bot.auth.accounts import Accounts, Principal
from bot.auth.passwords import DUMMY_HASH, verify_password_async
from bot.auth.sessions import LoginSessions, Session
from bot.auth.throttle import LoginThrottle
from bot.core.client_address import Network, client_address
from bot.core.metrics import LOGINS
from bot.core.security import production_mode
from bot.core.store.db import STORE_UNREACHABLE

log = logging.getLogger("careline.auth")

COOKIE = "careline_session"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class AuthService:
    """Created with the app; its stores are attached once the database and Redis are open."""

    cookie_secure: str = "auto"  # "auto" | "always" | "never"
    accounts: Accounts | None = None
    sessions: LoginSessions | None = None
    throttle: LoginThrottle | None = None
    proxies: tuple[Network, ...] = ()  # trusted load balancers: see bot/core/client_address.py

    async def principal(self, request: web.Request) -> tuple[Principal, Session] | None:
        """The logged-in, enabled account behind this request's cookie, if any."""
        if PRINCIPAL in request:
            return request[PRINCIPAL], request[SESSION]
        found = await self.principal_for_cookie(request.cookies.get(COOKIE))
        if found is not None:
            request[PRINCIPAL], request[SESSION] = found
        return found

    async def principal_for_cookie(self, cookie: str | None) -> tuple[Principal, Session] | None:
        """The enabled account behind a session cookie, if the session is still valid."""
        assert self.sessions is not None and self.accounts is not None
        session = await self.sessions.get(cookie)
        if session is None:
            return None
        account = await self.accounts.get(session.account_id)
        changed = account.password_changed_at.timestamp() if account else 0.0
        if account is None or account.disabled or session.created < changed:
            # Disabled, or the password changed since this sign-in: the session is over.
            await self.sessions.end(session)
            return None
        return Principal.of(account), session

    def secure_cookie(self, request: web.Request) -> bool:
        if self.cookie_secure == "always":
            return True
        if self.cookie_secure == "never":
            return False
        return production_mode() or request.secure


AUTH: web.AppKey[AuthService] = web.AppKey("auth", AuthService)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
SESSION: web.RequestKey[Session] = web.RequestKey("session", Session)


def principal_of(request: web.Request) -> Principal:
    """The signed-in user of a request that passed `require_role`."""
    return request[PRINCIPAL]


def json_error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers or None
    )


def require_role(*roles: str, page: bool = False) -> Callable[[Handler], Handler]:
    """Decorate an aiohttp handler: logged in, one of `roles` (any role if none), CSRF-checked."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            auth = request.app[AUTH]
            found = await auth.principal(request)
            if found is None:
                if page:
                    target = quote(request.path_qs, safe="/?=&")
                    raise web.HTTPFound(f"/login?next={target}")
                return json_error(401, "unauthenticated", "log in first")
            principal, session = found
            if roles and not principal.has_role(*roles):
                log.warning(
                    "forbidden: %s (%s) on %s %s",
                    principal.username,
                    principal.role,
                    request.method,
                    request.path,
                )
                return json_error(403, "forbidden", f"this needs the role {' or '.join(roles)}")
            if request.method in UNSAFE and not session.csrf_ok(request.headers.get(CSRF_HEADER)):
                return json_error(403, "csrf", f"missing or wrong {CSRF_HEADER} header")
            return await handler(request)

        return checked

    return wrap


def same_origin(request: web.Request) -> bool:
    """True when the request has no Origin (non-browser clients) or it is this host."""
    origin = request.headers.get("Origin")
    if not origin:
        return True
    return urlsplit(origin).netloc == request.host


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except Exception:
        raise web.HTTPBadRequest(
            text='{"error":{"code":"bad_json","message":"send a JSON object"}}',
            content_type="application/json",
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text='{"error":{"code":"bad_json","message":"send a JSON object"}}',
            content_type="application/json",
        )
    return body


async def login(request: web.Request) -> web.Response:
    auth = request.app[AUTH]
    assert auth.accounts and auth.sessions and auth.throttle
    if not same_origin(request):
        return json_error(403, "origin", "cross-site login refused")
    body = await _json_body(request)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        return json_error(400, "bad_request", "username and password are required")
    ip = client_address(request, auth.proxies)
    key = username.strip().lower()[:64]
    # Counted and checked in one atomic step before the (slow) hash check, so parallel
    # guesses cannot all slip past the limit; a success takes its attempt back.
    wait = await auth.throttle.attempt(key, ip)
    if wait:
        LOGINS.labels("throttled").inc()
        return json_error(
            429,
            "throttled",
            f"too many failed logins; try again in {wait} s",
            **{"Retry-After": str(wait)},
        )
    try:
        account = await auth.accounts.by_username(username)
    except STORE_UNREACHABLE:
        # No verdict was reached: not a failed login. The outage answer itself (503) is the
        # gateway's, as for every API call that cannot reach the database (bot/app.py).
        await auth.throttle.undo(key, ip)
        LOGINS.labels("unavailable").inc()
        raise
    ok = await verify_password_async(account.password_hash if account else DUMMY_HASH, password)
    if account is None or not ok or account.disabled:
        LOGINS.labels("failed").inc()
        # Never the typed username: people type their password there by mistake.
        who = f"account {account.id}" if account else "an unknown username"
        log.warning("failed login for %s from %s", who, ip)
        return json_error(401, "bad_credentials", "wrong username or password")
    await auth.throttle.succeeded(key, ip)
    session = await auth.sessions.create(account.id)
    LOGINS.labels("ok").inc()
    log.info("login: %s", account.username)
    resp = web.json_response(
        {"principal": Principal.of(account).as_dict(), "csrf_token": session.csrf}
    )
    resp.set_cookie(
        COOKIE,
        session.id,
        httponly=True,
        samesite="Strict",
        secure=auth.secure_cookie(request),
        path="/",
        max_age=auth.sessions.idle_s,
    )
    return resp


@require_role()
async def session_info(request: web.Request) -> web.Response:
    principal, session = request[PRINCIPAL], request[SESSION]
    return web.json_response({"principal": principal.as_dict(), "csrf_token": session.csrf})


@require_role()
async def logout(request: web.Request) -> web.Response:
    auth = request.app[AUTH]
    assert auth.sessions
    await auth.sessions.end(request[SESSION])
    resp = web.json_response({"ok": True})
    resp.del_cookie(COOKIE, path="/")
    return resp


@require_role()
async def logout_everywhere(request: web.Request) -> web.Response:
    auth = request.app[AUTH]
    assert auth.sessions
    ended = await auth.sessions.end_all(request[PRINCIPAL].id)
    resp = web.json_response({"ok": True, "sessions_ended": ended})
    resp.del_cookie(COOKIE, path="/")
    return resp


def add_routes(app: web.Application, login_page: Handler) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/api/auth/login", login)
    app.router.add_get("/api/auth/session", session_info)
    app.router.add_post("/api/auth/logout", logout)
    app.router.add_post("/api/auth/logout-all", logout_everywhere)
