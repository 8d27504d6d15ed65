"""JSON for what the gateway writes on every turn: event-stream entries, Pub/Sub notes and
socket frames. orjson encodes these in a fraction of the stdlib's time, as compact UTF-8
(non-ASCII text is kept, not escaped). Frames received from clients are still parsed with
the stdlib, whose error messages and handling of odd escapes the channels rely on."""

from __future__ import annotations

from typing import Any

import orjson


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads(data: str | bytes) -> Any:
    return orjson.loads(data)


__all__ = ["dumps", "loads"]
