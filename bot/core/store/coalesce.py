"""Group commit for one kind of write: concurrent callers share one statement.

Why: under load many turns end within the same millisecond, and each would pay a round trip
and a WAL flush of its own for a one-row update. A caller's item goes out with everything
submitted while the previous batch was being written; a lone caller's goes out at once, so
nothing waits on a timer. Each caller returns only once its batch is committed (or gets the
batch's error), exactly as if it had written alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_BATCH = 500


class Coalescer(Generic[T]):
    def __init__(self, write: Callable[[Sequence[T]], Awaitable[None]]) -> None:
        self._write = write
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain())
        await asyncio.shield(done)  # a cancelled caller's item is still written

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                try:
                    await self._write([item for item, _ in batch])
                except Exception as e:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(e)
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._writer = None


__all__ = ["Coalescer"]
