"""Fixtures of the gateway tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from bot.core.live.redis_conn import connect


@pytest.fixture(params=["embedded", "redis"])
async def client(
    request: pytest.FixtureRequest, redis_client: aioredis.Redis
) -> AsyncIterator[aioredis.Redis]:
    """Real Redis, and the embedded stand-in `make run` uses: code that must work on both."""
    if request.param == "redis":
        yield redis_client
        return
    handle = connect(None)
    assert handle.embedded
    yield handle.client
    await handle.close()
