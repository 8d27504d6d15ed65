"""Connecting to Redis, or to the embedded in-process stand-in.

The embedded stand-in (fakeredis, with Lua) lets `make run` work on a machine with no Redis
server: same commands, same Lua scripts, but only within one process — so it is for a
single gateway, and startup says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError


@dataclass
class RedisHandle:
    client: aioredis.Redis
    embedded: bool
    url: str  # for logs: "embedded" or the URL with any password masked

    async def close(self) -> None:
        await self.client.aclose()


def _mask(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


def connect(url: str | None, *, max_connections: int = 200) -> RedisHandle:
    if url:
        # A blocking pool: under a burst, a caller waits for a free connection instead of
        # failing with "too many connections" (redis-py's default pool raises at 100).
        # After a Redis restart or failover every pooled connection is dead; one retry on a
        # fresh connection spares each caller the first failure. (Commands sent twice are
        # safe here: stream entries and Lua steps are idempotent for their consumers.)
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=10,
            decode_responses=True,
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
            retry_on_error=[RedisConnectionError],
        )
        client = aioredis.Redis(connection_pool=pool)
        return RedisHandle(client, embedded=False, url=_mask(url))
    import fakeredis  # only the embedded mode needs it

    server = fakeredis.FakeServer()
    return RedisHandle(
        fakeredis.FakeAsyncRedis(server=server, decode_responses=True),
        embedded=True,
        url="embedded (in-process, single replica only)",
    )
