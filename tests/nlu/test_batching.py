"""Micro-batching: same answers as one-at-a-time, bounded queue, fast 503 under overload."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import aiohttp
import pytest

from bot.core.settings import Settings
from nlu.batching import MicroBatcher, Overloaded
from nlu.datasets import load_rasa_nlu
from nlu.process import NLUServiceProcess


def _echo_parser(sizes: list[int], delay: float = 0.0):  # type: ignore[no-untyped-def]
    def parse_many(texts: list[str]) -> list[dict]:
        sizes.append(len(texts))
        time.sleep(delay)
        return [{"text": t} for t in texts]

    return parse_many


async def test_batcher_keeps_order_and_batches_concurrent_requests() -> None:
    sizes: list[int] = []
    b = MicroBatcher(_echo_parser(sizes, delay=0.02), max_batch=16, max_wait_s=0.002)
    b.start()
    try:
        alone = await b.submit("one")  # alone: runs at once, batch of 1
        assert alone == {"text": "one"} and sizes == [1]
        texts = [f"t{i}" for i in range(40)]
        results = await asyncio.gather(*(b.submit(t) for t in texts))
        assert [r["text"] for r in results] == texts
        assert max(sizes) > 1 and max(sizes) <= 16  # batched, and bounded
        assert sum(sizes) == 41
    finally:
        await b.stop()


async def test_quick_batches_run_on_the_loop_slow_ones_on_the_executor() -> None:
    """A batch measured to fit the inline budget runs on the event loop's own thread; one
    expected to take longer goes to the worker thread, so the loop keeps answering."""
    threads: list[str] = []
    delay = {"s": 0.0}

    def parse_many(texts: list[str]) -> list[dict]:
        threads.append(threading.current_thread().name)
        time.sleep(delay["s"])
        return [{"text": t} for t in texts]

    b = MicroBatcher(parse_many, max_batch=8, inline_budget_s=0.05)
    b.start()
    loop_thread = threading.current_thread().name
    try:
        for i in range(20):  # unmeasured: the executor, until quick batches are seen
            await b.submit(f"q{i}")
        assert threads[0] != loop_thread and threads[-1] == loop_thread
        delay["s"] = 0.2  # the model slows down: measured, and moved off the loop
        for i in range(3):
            await b.submit(f"s{i}")
        assert threads[-1] != loop_thread
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        await b.submit("slow")
        ticker.cancel()
        assert ticks >= 5  # the loop kept running while the slow batch was parsed
    finally:
        await b.stop()


async def test_batcher_refuses_beyond_its_queue_at_once() -> None:
    gate = threading.Event()

    def slow(texts: list[str]) -> list[dict]:
        gate.wait(5)
        return [{"text": t} for t in texts]

    b = MicroBatcher(slow, max_batch=2, max_queue=4)
    b.start()
    try:
        first = asyncio.ensure_future(b.submit("busy"))
        await asyncio.sleep(0.05)  # the worker is now stuck in `slow`
        queued = [asyncio.ensure_future(b.submit(f"q{i}")) for i in range(4)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as info:
            await b.submit("one too many")
        # refused while the worker is still blocked: it was never queued behind the backlog
        assert not gate.is_set() and not first.done()
        assert info.value.retry_after >= 1
        gate.set()
        assert len(await asyncio.gather(first, *queued)) == 5
    finally:
        gate.set()
        await b.stop()


@pytest.mark.nlu
async def test_batched_parses_equal_one_by_one_on_all_project_data(
    settings: Settings, nlu_url: str
) -> None:
    texts = sorted({ex.text for p in (settings.nlu.data, settings.nlu.heldout)
                    for ex in load_rasa_nlu(settings.path(p))})  # fmt: skip
    assert len(texts) > 1500
    async with aiohttp.ClientSession() as http:
        batched: list[dict] = []
        for i in range(0, len(texts), 64):
            async with http.post(nlu_url + "/model/parse/batch",
                                 json={"texts": texts[i : i + 64]}) as r:  # fmt: skip
                assert r.status == 200, await r.text()
                batched += (await r.json())["results"]
        mismatches = []
        for text, b in zip(texts, batched, strict=True):
            async with http.post(nlu_url + "/model/parse", json={"text": text}) as r:
                single = await r.json()
            if single["intent"]["name"] != b["intent"]["name"]:
                mismatches.append((text, single["intent"], b["intent"]))
                continue
            s_rank = {x["name"]: x["confidence"] for x in single["intent_ranking"]}
            b_rank = {x["name"]: x["confidence"] for x in b["intent_ranking"]}
            assert s_rank.keys() == b_rank.keys(), text
            for name, conf in s_rank.items():
                assert b_rank[name] == pytest.approx(conf, abs=1e-4), (text, name)
    assert not mismatches, mismatches[:10]


@pytest.mark.nlu
async def test_batch_endpoint_validates_input(nlu_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for body, status, says in [
            ({"texts": []}, 400, "non-empty"),
            ({"texts": "hi"}, 400, "non-empty"),
            ({"texts": ["ok", 3]}, 400, "texts[1]"),
            ({"texts": ["x"] * 65}, 413, "at most 64"),
        ]:
            async with http.post(nlu_url + "/model/parse/batch", json=body) as r:
                assert r.status == status
                assert says in (await r.json())["message"]


@pytest.mark.nlu
async def test_overload_gets_503_with_retry_after_quickly(
    settings: Settings, nlu_model: Path
) -> None:
    service = NLUServiceProcess(
        settings, nlu_model, port=0, extra_args=("--max-queue", "8", "--max-batch", "4")
    )
    await service.start(timeout=180)
    try:
        statuses: list[int] = []  # in order of completion

        async def one(http: aiohttp.ClientSession, i: int) -> None:
            async with http.post(service.url + "/model/parse",
                                 json={"text": f"máy bị nóng quá {i}"}) as r:  # fmt: skip
                if r.status == 503:
                    assert int(r.headers["Retry-After"]) >= 1
                    assert (await r.json())["reason"] == "Overloaded"
                statuses.append(r.status)

        conn = aiohttp.TCPConnector(limit=300)
        async with aiohttp.ClientSession(connector=conn) as http:
            await asyncio.gather(*(one(http, i) for i in range(300)))
        assert statuses.count(200) >= 8 and statuses.count(503) > 0
        assert set(statuses) <= {200, 503}
        # Refusals are answered at once, not after waiting behind the backlog: most of them
        # complete before the last accepted request does.
        last_ok = max(i for i, s in enumerate(statuses) if s == 200)
        early = sum(1 for s in statuses[:last_ok] if s == 503)
        assert early > statuses.count(503) // 2
    finally:
        await service.stop()
