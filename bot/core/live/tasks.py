"""Stopping a consumer loop and the work it spawned, the same way for every worker."""

from __future__ import annotations

import asyncio
import contextlib


async def stop_loop_and_tasks(
    loop_task: asyncio.Task[None] | None, tasks: set[asyncio.Task[None]], *, grace_s: float = 3.0
) -> None:
    """Let the loop notice its stop flag (within one blocking read), then cancel it if it does
    not, and cancel the work in flight (unacknowledged work is redelivered elsewhere)."""
    if loop_task is not None:
        try:
            await asyncio.wait_for(asyncio.shield(loop_task), timeout=grace_s)
        except (TimeoutError, asyncio.CancelledError, Exception):
            loop_task.cancel()
    for t in list(tasks):
        t.cancel()
    for t in list(tasks):
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
