"""Login throttling: a fixed window of attempts per username and per client address.

Per username stops guessing one account's password; per address stops spraying many
accounts from one place. The check and the count are one atomic step (a Lua script) taken
before the password is verified, so parallel guesses cannot all slip past the limit: each
is counted, and the ones past it are refused without touching the hash. A good password
takes its own attempt back (colleagues behind one NAT are not locked out), but never more:
a counter never goes below zero and never outlives its window.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from bot.core.live.keys import Keys

# KEYS = user counter, address counter; ARGV = user limit, address limit, window (s).
# Returns 0 (counted, go on) or the seconds until another attempt is allowed.
_ATTEMPT = """
local u = tonumber(redis.call('GET', KEYS[1]) or '0')
local a = tonumber(redis.call('GET', KEYS[2]) or '0')
if u >= tonumber(ARGV[1]) or a >= tonumber(ARGV[2]) then
  local wait = 1
  for _, k in ipairs(KEYS) do wait = math.max(wait, redis.call('TTL', k)) end
  return wait
end
for _, k in ipairs(KEYS) do
  redis.call('INCR', k)
  if redis.call('TTL', k) < 0 then redis.call('EXPIRE', k, ARGV[3]) end
end
return 0
"""

# KEYS = user counter, address counter.
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
local a = tonumber(redis.call('GET', KEYS[2]) or '0')
if a > 0 then redis.call('DECR', KEYS[2]) end
return 1
"""

# KEYS = user counter, address counter: an attempt that reached no verdict is given back.
_UNDO = """
for _, k in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', k) or '0')
  if n > 0 then redis.call('DECR', k) end
end
return 1
"""


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
        self._attempt = redis.register_script(_ATTEMPT)
        self._succeeded = redis.register_script(_SUCCEEDED)
        self._undo = redis.register_script(_UNDO)

    def _user(self, username: str) -> str:
        return self.keys.login_failures_of_user(username)

    def _ip(self, ip: str) -> str:
        return self.keys.login_failures_from(ip)

    async def attempt(self, username: str, ip: str) -> int:
        """Count one login attempt, atomically with the check: 0 when it may go on (the
        password is then verified), else the seconds until one is allowed again."""
        return int(
            await self._attempt(
                keys=[self._user(username), self._ip(ip)],
                args=[self.max_per_user, self.max_per_ip, self.window_s],
            )
        )

    async def succeeded(self, username: str, ip: str) -> None:
        """A good password: the username's window starts over, and the address gets back
        the attempt counted for it."""
        await self._succeeded(keys=[self._user(username), self._ip(ip)])

    async def undo(self, username: str, ip: str) -> None:
        """The attempt reached no verdict (the account store was unreachable): it is not a
        failed login, and an outage must not lock everyone out once it is over."""
        await self._undo(keys=[self._user(username), self._ip(ip)])
