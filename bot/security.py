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
from pathlib import Path

from bot.settings import Settings, SettingsError

_VISITOR_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


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
    """`<visitor-id>.<mac>` tokens: unforgeable without the key, verifiable by any replica."""

    def __init__(self, key: bytes, purpose: str) -> None:
        self._key = hashlib.sha256(key + b"|" + purpose.encode()).digest()

    def _mac(self, value: str) -> str:
        digest = hmac.new(self._key, value.encode(), hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self) -> tuple[str, str]:
        """A new (visitor_id, token)."""
        visitor = secrets.token_urlsafe(18)
        return visitor, f"{visitor}.{self._mac(visitor)}"

    def verify(self, token: object) -> str | None:
        """The visitor id in a valid token, else None (never raises on junk)."""
        if not isinstance(token, str) or token.count(".") != 1 or len(token) > 200:
            return None
        visitor, mac = token.split(".")
        if not _VISITOR_RE.match(visitor):
            return None
        # bytes: compare_digest refuses str with non-ASCII characters
        given = mac.encode("utf-8", "surrogateescape")
        return visitor if hmac.compare_digest(given, self._mac(visitor).encode()) else None
