"""Login throttling: a fixed window of failed attempts per username and per client address.

Per username stops guessing one account's password; per address stops spraying many
accounts from one place. Successful logins clear the username's counter.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from bot.live.keys import Keys


class LoginThrottle:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        max_per_user: int,
        max_per_ip: int,
        window_s: int,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.max_per_user = max_per_user
        self.max_per_ip = max_per_ip
        self.window_s = window_s

    def _user(self, username: str) -> str:
        return f"{self.keys.prefix}:login-fail:u:{username[:64]}"

    def _ip(self, ip: str) -> str:
        return f"{self.keys.prefix}:login-fail:ip:{ip}"

    async def blocked_for(self, username: str, ip: str) -> int:
        """Seconds until another attempt is allowed; 0 when allowed now."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self._user(username))
            pipe.ttl(self._user(username))
            pipe.get(self._ip(ip))
            pipe.ttl(self._ip(ip))
            user_n, user_ttl, ip_n, ip_ttl = await pipe.execute()
        wait = 0
        if int(user_n or 0) >= self.max_per_user:
            wait = max(wait, int(user_ttl), 1)
        if int(ip_n or 0) >= self.max_per_ip:
            wait = max(wait, int(ip_ttl), 1)
        return wait

    async def failed(self, username: str, ip: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in (self._user(username), self._ip(ip)):
                pipe.incr(key)
                pipe.expire(key, self.window_s, nx=True)
            await pipe.execute()

    async def succeeded(self, username: str, ip: str) -> None:
        """A good password: the username's window starts over, and the address gets back
        the attempt counted for it (colleagues behind one NAT are not locked out)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self._user(username))
            pipe.decr(self._ip(ip))
            await pipe.execute()
