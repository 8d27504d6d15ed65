"""Per-conversation event logs (`EventLog`) and the engine's inbox (`Inbox`), on Redis
Streams.

- `cl:conv:<id>:events`: every visible event of a conversation (messages, state changes), in
  order, with Redis-assigned increasing ids. A reconnecting widget replays from the last id
  it saw: nothing lost, nothing twice. Capped (approximately) at `maxlen` events; older
  history comes from SQL.
- `cl:conv:<id>:notify` (Pub/Sub): a wake-up for each new event, carrying the event, its id
  and the id before it, plus ephemeral signals (typing) that are not worth keeping. A
  subscriber whose cursor is that previous id sends the event as it comes; one that is
  behind (it missed a wake-up, or just attached) reads the stream from its cursor.
- `cl:inbox` (consumer group `engine`): customer messages waiting for the bot engine. An entry
  is acknowledged only after the engine has handled the message, so a replica killed
  mid-message leaves it pending for another replica to claim.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from bot.core import wire_json
from bot.core.live.keys import Keys
from bot.core.live.lua import LuaScript

GROUP = "engine"

# The embedded stand-in (fakeredis 2.40) answers a blocking XREADGROUP at once when nothing
# is waiting instead of blocking. Every consumer loop then spun, holding a core while idle
# under `make run`, and under load it starved the rest of the process (a shutdown that did
# not finish). Real Redis answers empty only once the block time is up.
EARLY_EMPTY_PAUSE_S = 0.05


async def ensure_group(redis: aioredis.Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) unless it exists."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


async def trim_acknowledged(redis: aioredis.Redis, stream: str, group: str) -> int:
    """Drop the entries every consumer of `group` is done with: older than both the last
    one delivered and the oldest one still pending. Newer entries and pending ones are
    kept, so nothing in flight or waiting is lost. Returns how many were dropped.

    The delivered mark is read first: whatever is delivered after that read is newer than
    the floor, and whatever was delivered before it and is still unacknowledged shows up
    in the pending summary read next."""
    groups = {g.get("name"): g for g in await redis.xinfo_groups(stream)}
    floor = str((groups.get(group) or {}).get("last-delivered-id") or "0-0")
    pending = await redis.xpending(stream, group)
    if pending and pending.get("pending"):
        floor = min(floor, str(pending["min"]), key=_stream_id)
    if _stream_id(floor) == (0, 0):
        return 0
    return int(await redis.xtrim(stream, minid=floor, approximate=False))


def _stream_id(eid: str) -> tuple[int, int]:
    ms, _, seq = eid.partition("-")
    return int(ms or 0), int(seq or 0)


async def read_group(
    redis: aioredis.Redis,
    stream: str,
    group: str,
    consumer: str,
    *,
    count: int,
    block_ms: int | None,
) -> list[tuple[str, dict[str, str]]]:
    """New entries for `consumer`, waiting up to `block_ms` for some (None: not waiting). An
    empty answer to a wait that comes back early is followed by a short pause, so the
    caller's loop never spins."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        resp = await redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
    except ResponseError as e:
        if "NOGROUP" not in str(e) and "UNBLOCKED" not in str(e):
            raise
        # Redis lost the group (a restart without persistence, FLUSHALL, a failover), or the
        # stream was deleted under a blocked read ("UNBLOCKED ... no longer exists"): make it
        # again and go on. Entries redelivered from the start are harmless: every consumer's
        # work is idempotent, and SQL says what is already done.
        await ensure_group(redis, stream, group)
        return []
    batches = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]] | None, resp)
    entries = [(str(eid), fields) for _stream, batch in batches or [] for eid, fields in batch]
    if not entries and block_ms is not None and loop.time() - started < block_ms / 2000:
        await asyncio.sleep(min(EARLY_EMPTY_PAUSE_S, block_ms / 1000))
    return entries


_APPEND = LuaScript(
    """
    local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
    local prev = '0-0'
    if #last > 0 then prev = last[1][1] end
    local eid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[1])
    redis.call('PUBLISH', ARGV[3],
        '{"eid":"' .. eid .. '","prev":"' .. prev .. '","e":' .. ARGV[1] .. '}')
    return eid
    """
)


def carried_event(note: Mapping[str, Any], cursor: str) -> tuple[str, dict[str, Any]] | None:
    """The event a wake-up carries, if it comes right after `cursor`: the subscriber sends
    it without reading the stream. None: read the stream from the cursor instead."""
    eid, prev, event = note.get("eid"), note.get("prev"), note.get("e")
    if isinstance(eid, str) and prev == cursor and isinstance(event, dict):
        return eid, event
    return None


def already_sent(note: Mapping[str, Any], cursor: str) -> bool:
    """The wake-up is for an event at or before `cursor` (a stream read sent it already)."""
    eid = note.get("eid")
    return isinstance(eid, str) and _stream_id(eid) <= _stream_id(cursor)


class EventLog:
    """Each conversation's visible events, in order, for live viewers and lossless resume."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, maxlen: int = 2000) -> None:
        self.redis = redis
        self.keys = keys
        self.maxlen = maxlen

    async def append(self, conversation_id: str, event: dict[str, Any]) -> str:
        """Append an event and wake every subscriber with it; returns the event id. One
        script, so the id before it, the append and the wake-up are one atomic step: wake-ups
        arrive in stream order, each naming exactly the event it follows."""
        eid = await _APPEND(
            self.redis,
            [self.keys.events(conversation_id)],
            [wire_json.dumps(event), self.maxlen, self.keys.notify(conversation_id)],
        )
        return str(eid)

    async def signal(self, conversation_id: str, payload: dict[str, Any]) -> None:
        """An ephemeral signal (e.g. typing): delivered to live subscribers, never replayed."""
        await self.redis.publish(self.keys.notify(conversation_id), wire_json.dumps(payload))

    async def after(
        self, conversation_id: str, after_id: str, count: int = 500
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events with id > after_id, oldest first."""
        key = self.keys.events(conversation_id)
        rows = cast(
            list[tuple[str, dict[str, str]]],
            await self.redis.xrange(key, min=f"({after_id}", count=count),
        )  # decoded: the client is made with decode_responses
        return [(str(eid), wire_json.loads(fields["e"])) for eid, fields in rows]

    async def last_id(self, conversation_id: str) -> str:
        """Id of the newest event, or "0-0" for an empty stream."""
        rows = await self.redis.xrevrange(self.keys.events(conversation_id), count=1)
        return str(rows[0][0]) if rows else "0-0"

    async def first_id(self, conversation_id: str) -> str | None:
        rows = await self.redis.xrange(self.keys.events(conversation_id), count=1)
        return str(rows[0][0]) if rows else None


class Inbox:
    """Customer messages waiting for the bot engine (one stream, consumer group `engine`)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.key = keys.inbox

    async def ensure_group(self) -> None:
        await ensure_group(self.redis, self.key, GROUP)

    async def enqueue(self, conversation_id: str, message_id: int) -> None:
        await self.redis.xadd(self.key, {"c": conversation_id, "m": str(message_id)})
