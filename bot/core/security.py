"""Secrets and signed tokens.

The secret key comes from the environment (CARELINE_SECRET_KEY). Only outside production
mode, when it is unset, a random key is generated once into var/secret_key (0600) so
`make run` works with no setup; with CARELINE_ENV=production a missing key is a startup
error. Replicas must share the key (they verify each other's visitor tokens).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from bot.core.settings import Settings, SettingsError

_VISITOR_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_ISSUED_RE = re.compile(r"^[0-9a-f]{1,12}$")


def production_mode(env: dict[str, str] | None = None) -> bool:
    return (env or os.environ).get("CARELINE_ENV", "").lower() == "production"


def require_shared_redis(settings: Settings, env: dict[str, str] | None = None) -> None:
    """In production, replicas must share one Redis: the in-process stand-in would split
    queues, sessions and locks between them, so starting on it is refused."""
    if production_mode(env) and not settings.redis.url:
        raise SettingsError(
            "REDIS_URL is required when CARELINE_ENV=production (careline.redis.url is null, "
            "and the in-process stand-in cannot be shared by replicas)"
        )


def load_secret_key(settings: Settings, env: dict[str, str] | None = None) -> bytes:
    env = dict(os.environ) if env is None else env
    value = env.get("CARELINE_SECRET_KEY")
    if value:
        if len(value) < 32:
            raise SettingsError("CARELINE_SECRET_KEY must be at least 32 characters")
        return value.encode()
    if production_mode(env):
        raise SettingsError("CARELINE_SECRET_KEY is required when CARELINE_ENV=production")
    path: Path = settings.root / "var" / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


class TokenSigner:
    """`<visitor-id>.<issued>.<mac>` tokens: unforgeable without the key, verifiable by any
    replica, and valid for `max_age_s` after they were issued. The widget gets a fresh token
    at every hello, so a returning visitor keeps their identity while an abandoned (or
    stolen) token runs out."""

    def __init__(self, key: bytes, purpose: str, *, max_age_s: float = 180 * 86400,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self._key = hashlib.sha256(key + b"|" + purpose.encode()).digest()
        self.max_age_s = max_age_s
        self._clock = clock

    def _mac(self, value: str) -> str:
        digest = hmac.new(self._key, value.encode(), hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, visitor: str | None = None) -> tuple[str, str]:
        """(visitor_id, token): a new visitor, or a fresh token for a known one."""
        visitor = visitor or secrets.token_urlsafe(18)
        issued = format(int(self._clock()), "x")
        return visitor, f"{visitor}.{issued}.{self._mac(f'{visitor}.{issued}')}"

    def verify(self, token: object) -> str | None:
        """The visitor id in a valid, unexpired token, else None (never raises on junk)."""
        if not isinstance(token, str) or token.count(".") != 2 or len(token) > 200:
            return None
        visitor, issued, mac = token.split(".")
        if not _VISITOR_RE.match(visitor) or not _ISSUED_RE.match(issued):
            return None
        # bytes: compare_digest refuses str with non-ASCII characters
        given = mac.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, self._mac(f"{visitor}.{issued}").encode()):
            return None
        age = self._clock() - int(issued, 16)
        return visitor if -300 <= age <= self.max_age_s else None
