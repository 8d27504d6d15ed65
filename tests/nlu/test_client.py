"""The gateway's NLU client: typed errors, retries, and the circuit breaker.

The breaker is tested against a real service: first nothing listens on the port (down),
then the real NLU service starts there (back), and the client must notice both.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest
from aiohttp import web

from bot.core.settings import Settings
from nlu.breaker import BreakerState, CircuitBreaker
from nlu.client import NLUClient, NLURejected, NLUUnavailable
from nlu.process import NLUServiceProcess, free_port


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_and_probes_once_when_half_open() -> None:
    clock = FakeClock()
    b = CircuitBreaker(failures=3, reset_s=10, clock=clock)
    for _ in range(2):
        assert b.allow()
        b.record_failure()
    assert b.state is BreakerState.CLOSED
    b.record_failure()
    assert b.state is BreakerState.OPEN and not b.allow()
    assert b.retry_in() == pytest.approx(10)
    clock.now = 10.0
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow()  # the probe
    assert not b.allow()  # only one probe at a time
    b.record_failure()  # probe failed: open again, wait restarts
    assert b.state is BreakerState.OPEN and b.retry_in() == pytest.approx(10)
    clock.now = 20.0
    assert b.allow()
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.allow()


@pytest.mark.nlu
async def test_breaker_opens_when_service_down_and_closes_when_it_returns(
    settings: Settings, nlu_model
) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    client = NLUClient(
        f"http://127.0.0.1:{port}",
        timeout_s=2,
        retries=1,
        retry_backoff_s=0.01,
        breaker=CircuitBreaker(failures=3, reset_s=1.0),
    )
    async with client:
        for _ in range(3):
            with pytest.raises(NLUUnavailable, match="unreachable"):
                await client.parse("xin chào")
        assert client.breaker_state is BreakerState.OPEN
        with pytest.raises(NLUUnavailable, match="circuit open"):  # refused before any I/O
            await client.parse("xin chào")

        service = NLUServiceProcess(settings, nlu_model, port=port)
        await service.start(timeout=180)
        try:
            # start() took seconds, so reset_s has passed: the next call is the probe.
            result = await client.parse("xin chào shop")
            assert result.intent == "greet"
            assert client.breaker_state is BreakerState.CLOSED
        finally:
            await service.stop()


async def _fake_nlu(handler, **more) -> tuple[web.AppRunner, str]:  # type: ignore[no-untyped-def]
    """A stand-in service: `handler` answers /model/parse; `more` maps paths to handlers."""
    app = web.Application()
    app.router.add_post("/model/parse", handler)
    for path, other in more.items():
        app.router.add_post(path, other)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def test_4xx_is_rejected_not_retried_and_does_not_trip_the_breaker() -> None:
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response({"status": "failure", "message": "text is empty"}, status=400)

    runner, url = await _fake_nlu(handler)
    try:
        async with NLUClient(url, retries=2, breaker=CircuitBreaker(failures=1)) as c:
            with pytest.raises(NLURejected, match="text is empty"):
                await c.parse("x")
            assert calls == 1
            assert c.breaker_state is BreakerState.CLOSED
    finally:
        await runner.cleanup()


async def test_5xx_is_retried_once_then_unavailable() -> None:
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.Response(status=502, text="bad gateway")
        return web.json_response(
            {"text": "x", "intent": {"name": "greet", "confidence": 0.9}, "entities": []}
        )

    runner, url = await _fake_nlu(handler)
    try:
        async with NLUClient(url, retries=1, retry_backoff_s=0) as c:
            assert (await c.parse("x")).intent == "greet"
            assert calls == 2
    finally:
        await runner.cleanup()


async def test_503_with_retry_after_is_not_retried_and_reports_when() -> None:
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response(
            {"message": "overloaded"}, status=503, headers={"Retry-After": "2"}
        )

    runner, url = await _fake_nlu(handler)
    try:
        async with NLUClient(url, retries=3, retry_backoff_s=0) as c:
            with pytest.raises(NLUUnavailable) as info:
                await c.parse("x")
        assert calls == 1 and info.value.retry_in == 2.0
    finally:
        await runner.cleanup()


async def test_timeout_and_malformed_result_are_unavailable() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({})

    runner, url = await _fake_nlu(slow)
    try:
        async with NLUClient(url, timeout_s=0.2, retries=0) as c:
            with pytest.raises(NLUUnavailable, match="timed out"):
                await c.parse("x")
    finally:
        await runner.cleanup()

    async def garbage(request: web.Request) -> web.Response:
        return web.json_response({"intent": "not-a-dict"})

    runner, url = await _fake_nlu(garbage)
    try:
        async with NLUClient(url, retries=0) as c:
            with pytest.raises(NLUUnavailable, match="malformed"):
                await c.parse("x")
    finally:
        await runner.cleanup()


async def test_open_breaker_sends_nothing_to_the_service() -> None:
    calls = 0

    async def failing(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(status=500, text="boom")

    runner, url = await _fake_nlu(failing)
    try:
        breaker = CircuitBreaker(failures=2, reset_s=60)
        async with NLUClient(url, retries=0, breaker=breaker) as c:
            for _ in range(2):
                with pytest.raises(NLUUnavailable, match="error 500"):
                    await c.parse("x")
            assert calls == 2 and c.breaker_state is BreakerState.OPEN
            for _ in range(5):
                with pytest.raises(NLUUnavailable, match="circuit open"):
                    await c.parse("x")
            assert calls == 2  # the open circuit kept every call off the network
    finally:
        await runner.cleanup()


def test_a_probe_that_never_reports_back_gives_way() -> None:
    clock = FakeClock()
    b = CircuitBreaker(failures=1, reset_s=10, clock=clock)
    b.record_failure()
    clock.now = 10.0
    assert b.allow()  # the probe goes out ... and its caller is cancelled: no outcome
    assert not b.allow()
    b.abandon()
    assert b.allow()  # another call may probe at once
    clock.now = 25.0  # and a probe lost without even abandon() gives way after reset_s
    assert b.allow()


async def test_a_cancelled_probe_does_not_keep_the_circuit_open() -> None:
    release = asyncio.Event()

    async def hanging_then_fine(request: web.Request) -> web.Response:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), 30)  # hangs until released
        return web.json_response({"text": "x", "intent": {"name": "greet", "confidence": 0.9}})

    runner, url = await _fake_nlu(hanging_then_fine)
    try:
        breaker = CircuitBreaker(failures=1, reset_s=0.2)
        async with NLUClient(url, retries=0, timeout_s=20, breaker=breaker) as c:
            breaker.record_failure()  # open
            await asyncio.sleep(0.25)  # half-open: the next call is the probe
            probe = asyncio.create_task(c.parse("x"))
            await asyncio.sleep(0.1)
            probe.cancel()  # e.g. the customer's turn was cancelled at shutdown
            with pytest.raises(asyncio.CancelledError):
                await probe
            release.set()
            result = await c.parse("x")  # not "circuit open" forever
            assert result.intent == "greet" and c.breaker_state is BreakerState.CLOSED
    finally:
        await runner.cleanup()


# -- concurrent parses share requests ---------------------------------------------------------


async def test_concurrent_parses_share_batch_requests_and_match_one_by_one(nlu_url: str) -> None:
    asks = ("shop mở cửa mấy giờ", "bảo hành pin bao lâu")
    texts = [f"{asks[i % 2]} {i}" for i in range(24)]
    seen: list[str] = []

    async def forward(request: web.Request) -> web.Response:
        seen.append(request.path)
        async with aiohttp.ClientSession() as http, http.post(
            nlu_url + request.path, data=await request.read(),
            headers={"Content-Type": "application/json"},
        ) as r:  # fmt: skip
            return web.Response(status=r.status, body=await r.read(), content_type=r.content_type)

    runner, url = await _fake_nlu(forward, **{"/model/parse/batch": forward})
    try:
        async with NLUClient(url) as c:
            together = await asyncio.gather(*(c.parse(t, context=["pin nóng"]) for t in texts))
            sent = len(seen)
            alone = [await c.parse(t, context=["pin nóng"]) for t in texts]
        assert [r.raw for r in together] == [r.raw for r in alone]  # each its own answer
        assert "/model/parse/batch" in seen[:sent] and sent < len(texts)
    finally:
        await runner.cleanup()


async def test_a_refused_text_in_a_batch_is_refused_alone_and_a_server_without_batches_works() -> (
    None
):
    batches = 0

    async def parse(request: web.Request) -> web.Response:
        text = (await request.json())["text"]
        if text == "bad":
            return web.json_response({"message": "text is too long"}, status=413)
        await asyncio.sleep(0.05)  # slow enough that the others pile up behind it
        return web.json_response({"text": text, "intent": {"name": text, "confidence": 0.9}})

    async def batch(request: web.Request) -> web.Response:
        nonlocal batches
        batches += 1
        texts = [t["text"] for t in (await request.json())["texts"]]
        if "bad" in texts:
            return web.json_response({"message": "texts[1]: too long"}, status=413)
        return web.json_response(
            {"results": [{"text": t, "intent": {"name": t, "confidence": 0.9}} for t in texts]}
        )

    for with_batches in (True, False):
        routes = {"/model/parse/batch": batch} if with_batches else {}
        runner, url = await _fake_nlu(parse, **routes)
        try:
            async with NLUClient(url) as c:
                names = ["a", "b", "bad", "c", "d", "e"]
                got = await asyncio.gather(*(c.parse(n) for n in names), return_exceptions=True)
                assert isinstance(got[2], NLURejected) and got[2].status == 413
                assert [g.intent for g in got if not isinstance(g, BaseException)] == [
                    "a", "b", "c", "d", "e",
                ]  # fmt: skip
                assert c.breaker_state is BreakerState.CLOSED
        finally:
            await runner.cleanup()
    assert batches >= 1
