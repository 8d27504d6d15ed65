"""The login throttle holds under parallel guesses, and a good password never buys extra
attempts: the check and the count are one atomic step, taken before the hash is verified."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from bot.auth.throttle import LoginThrottle
from bot.core.live.keys import Keys
from tests.handoff.conftest import add_account


async def test_parallel_wrong_passwords_are_throttled_at_the_limit(desk_gateway) -> None:  # type: ignore[no-untyped-def]
    await add_account(desk_gateway, "hoa")
    limit = desk_gateway.settings.auth.login_max_failures
    url = desk_gateway.url + "/api/auth/login"
    async with aiohttp.ClientSession() as http:

        async def guess(i: int) -> int:
            body = {"username": "hoa", "password": f"guess number {i}"}
            async with http.post(url, json=body) as r:
                return r.status

        statuses = await asyncio.gather(*(guess(i) for i in range(25)))
    assert statuses.count(401) == limit  # only these were checked against the hash
    assert statuses.count(429) == 25 - limit


async def test_a_good_password_never_buys_extra_attempts(redis_client) -> None:  # type: ignore[no-untyped-def]
    keys = Keys("t-throttle-" + str(id(redis_client)))
    t = LoginThrottle(redis_client, keys, max_per_user=100, max_per_ip=3, window_s=60)
    try:
        # successes with nothing counted (e.g. after the window ran out) leave no credit
        for _ in range(5):
            await t.succeeded("insider", "10.0.0.9")
        assert await redis_client.get(t._ip("10.0.0.9")) is None
        allowed = [await t.attempt(f"user{i}", "10.0.0.9") == 0 for i in range(5)]
        assert allowed == [True, True, True, False, False]
        ttl = await redis_client.ttl(t._ip("10.0.0.9"))
        assert 0 < ttl <= 60  # the counter never outlives its window
    finally:
        keys_found = [k async for k in redis_client.scan_iter(f"{keys.prefix}:*")]
        if keys_found:
            await redis_client.delete(*keys_found)


async def test_a_failed_login_does_not_log_what_was_typed(desk_gateway, caplog) -> None:  # type: ignore[no-untyped-def]
    typed = "Secret-Password-Typed-As-Username"
    with caplog.at_level(logging.INFO):
        async with aiohttp.ClientSession() as http:
            body = {"username": typed, "password": "whatever"}
            async with http.post(desk_gateway.url + "/api/auth/login", json=body) as r:
                assert r.status == 401
    assert typed.lower() not in caplog.text.lower()
    assert "failed login" in caplog.text
