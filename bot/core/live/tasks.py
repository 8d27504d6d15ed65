"""Stopping a consumer loop and the work it spawned, the same way for every worker."""

from __future__ import annotations

import asyncio
import contextlib


async def stop_loop_and_tasks(
    loop_task: asyncio.Task[None] | None, tasks: set[asyncio.Task[None]], *, grace_s: float = 3.0
) -> None:
    """End a consumer loop whose stop flag is set, and cancel the work in flight.

    The loop is cancelled at once rather than left to finish its blocking read: shutdown
    should not wait out a block period. redis-py drops a connection whose command was
    cancelled, and whatever that read had delivered stays pending in the consumer group, to
    be claimed again like the work of a crashed consumer. A cancel absorbed somewhere inside
    the loop still ends it at its next turn, because the flag is set; `grace_s` bounds the
    wait for that."""
    if loop_task is not None and not loop_task.done():
        loop_task.cancel()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(loop_task, timeout=grace_s)
    for t in list(tasks):
        t.cancel()
    for t in list(tasks):
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
