"""Console sessions in Redis: opaque random ids in an HttpOnly cookie, never a JWT.

Why server-side: logging out (or disabling an account) must take effect at once on every
device, which a self-contained token cannot do. Each session also carries its own CSRF token.

Keys: `{p}:sess:{sid}` HASH (account, csrf, created) with a sliding idle TTL, and
`{p}:sess-of:{account}` SET of that account's session ids, for "log out everywhere".
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from bot.core.live.keys import Keys


@dataclass(frozen=True)
class Session:
    id: str
    account_id: str
    csrf: str
    created: float = 0.0  # epoch seconds

    def csrf_ok(self, token: str | None) -> bool:
        # bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500)
        return bool(token) and hmac.compare_digest(
            self.csrf.encode(), (token or "").encode("utf-8", "surrogateescape")
        )


class LoginSessions:
    """Console logins in Redis: one hash per session id, idle-expired, indexed per account so
    a logout-all, a disable or a password change can end them all at once."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, idle_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.idle_s = idle_s

    def _key(self, sid: str) -> str:
        return self.keys.session(sid)

    def _of(self, account_id: str) -> str:
        return self.keys.sessions_of(account_id)

    @property
    def revoked_channel(self) -> str:
        """Pub/Sub: {"account": id} whenever sessions of that account end, so every replica
        re-checks that account's open sockets at once."""
        return self.keys.sessions_revoked

    async def announce_revoked(self, account_id: str) -> None:
        await self.redis.publish(self.revoked_channel, json.dumps({"account": account_id}))

    async def create(self, account_id: str) -> Session:
        session = Session(
            secrets.token_urlsafe(32), account_id, secrets.token_urlsafe(32), time.time()
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._key(session.id),
                mapping={"account": account_id, "csrf": session.csrf, "created": session.created},
            )
            pipe.expire(self._key(session.id), self.idle_s)
            pipe.sadd(self._of(account_id), session.id)
            pipe.expire(self._of(account_id), self.idle_s * 2)
            await pipe.execute()
        return session

    async def get(self, sid: str | None) -> Session | None:
        """The live session for a cookie value (and slide its expiry), or None."""
        if not sid or len(sid) > 100:
            return None
        key = self._key(sid)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(key, "account", "csrf", "created")
            pipe.expire(key, self.idle_s, xx=True)
            (account, csrf, created), _ = await pipe.execute()
        if not account or not csrf:
            return None
        # Keep the account's session index alive as long as any of its sessions is in use,
        # so "log out everywhere" finds them all.
        await self.redis.expire(self._of(_s(account)), self.idle_s * 2)
        return Session(sid, _s(account), _s(csrf), float(created or 0))

    async def end(self, session: Session) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(session.id))
            pipe.srem(self._of(session.account_id), session.id)
            await pipe.execute()
        await self.announce_revoked(session.account_id)

    async def end_all(self, account_id: str) -> int:
        """Log an account out everywhere; returns how many sessions ended."""
        sids = [_s(s) for s in await self.redis.smembers(self._of(account_id))]
        async with self.redis.pipeline(transaction=True) as pipe:
            for sid in sids:
                pipe.delete(self._key(sid))
            pipe.delete(self._of(account_id))
            await pipe.execute()
        await self.announce_revoked(account_id)
        return len(sids)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
