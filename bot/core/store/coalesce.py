"""Group commit for one kind of write: concurrent callers share one statement.

Why: under load many turns end within the same millisecond, and each would pay a round trip
and a WAL flush of its own for a one-row write. A caller's item goes out with everything
submitted while the previous batch was being written; a lone caller's goes out at once, so
nothing waits on a timer. Each caller returns only once its batch is committed, with its own
item's result, exactly as if it had written alone.

A batch is one statement, so it commits whole or not at all. When it fails for a reason of
its items (`item_fault` says which errors are: a value the database refuses, say) rather
than of the database (an outage), each item is written again on its own, so one bad item
fails only its own caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 500


def _never(_: Exception) -> bool:
    return False


class Coalescer(Generic[T, R]):
    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        item_fault: Callable[[Exception], bool] = _never,
    ) -> None:
        """`write` stores a batch and returns one result per item, in order."""
        self._write = write
        self._item_fault = item_fault
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain())
        return await asyncio.shield(done)  # a cancelled caller's item is still written

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                try:
                    results = await self._write([item for item, _ in batch])
                except Exception as e:
                    if len(batch) > 1 and self._item_fault(e):
                        for one in batch:
                            await self._write_alone(*one)
                        continue
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(e)
                else:
                    for (_, done), result in zip(batch, results, strict=True):
                        if not done.done():
                            done.set_result(result)
        finally:
            self._writer = None

    async def _write_alone(self, item: T, done: asyncio.Future[R]) -> None:
        try:
            (result,) = await self._write([item])
        except Exception as e:
            if not done.done():
                done.set_exception(e)
        else:
            if not done.done():
                done.set_result(result)


__all__ = ["Coalescer"]
