"""Consumer loops read Redis streams through `read_group`: it must wait when nothing is
queued, on real Redis and on the embedded stand-in `make run` uses (whose blocking read
answers at once), and hand over what is queued."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import redis.asyncio as aioredis

from bot.core.live.streams import EARLY_EMPTY_PAUSE_S, read_group

WINDOW_S = 0.5
BLOCK_MS = 1000


async def _empty_stream(client: aioredis.Redis) -> str:
    stream = f"test:reads:{uuid.uuid4().hex}"
    await client.xgroup_create(stream, "g", id="0", mkstream=True)
    return stream


async def test_an_empty_stream_is_waited_on_not_polled_in_a_busy_loop(
    client: aioredis.Redis,
) -> None:
    stream = await _empty_stream(client)
    reads = 0

    async def consume() -> None:
        nonlocal reads
        # bounded: a read that never yields would starve the event loop, and this test with it
        while reads < 1000:
            assert await read_group(client, stream, "g", "c", count=8, block_ms=BLOCK_MS) == []
            reads += 1

    task = asyncio.create_task(consume())
    await asyncio.sleep(WINDOW_S)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # a loop that waits makes at most one read per pause; a busy one makes thousands
    assert reads <= WINDOW_S / EARLY_EMPTY_PAUSE_S + 2, reads
    await client.delete(stream)


async def test_queued_entries_are_handed_over_in_order(client: aioredis.Redis) -> None:
    stream = await _empty_stream(client)
    ids = [await client.xadd(stream, {"n": str(n)}) for n in range(3)]
    got = await read_group(client, stream, "g", "c", count=8, block_ms=BLOCK_MS)
    assert [eid for eid, _ in got] == [str(i) for i in ids]
    assert [fields["n"] for _, fields in got] == ["0", "1", "2"]
    # delivered once: the next read finds nothing new for the group
    assert await read_group(client, stream, "g", "c", count=8, block_ms=10) == []
    await client.delete(stream)
