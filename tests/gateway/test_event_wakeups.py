"""A conversation's wake-ups carry their event: a socket that is up to date sends it as it
comes, and one that missed something reads the stream from its cursor, so every event still
arrives once and in order. On real Redis and on the embedded stand-in `make run` uses."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from bot.channels.widget_client import WidgetClient
from bot.core import wire_json
from bot.core.live.keys import Keys
from bot.core.live.streams import EventLog, already_sent, carried_event


async def test_each_wake_up_names_its_event_and_the_one_before(client: aioredis.Redis) -> None:
    keys = Keys(f"t{uuid.uuid4().hex[:10]}")
    log = EventLog(client, keys)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(keys.notify("c1"))
    try:
        ids = [await log.append("c1", {"kind": "state", "state": s}) for s in ("BOT", "CLOSED")]
        notes = []
        while len(notes) < 2:
            msg = await pubsub.get_message(timeout=5.0)
            if msg:
                notes.append(wire_json.loads(msg["data"]))
        assert [(n["prev"], n["eid"]) for n in notes] == [("0-0", ids[0]), (ids[0], ids[1])]
        assert notes[1]["e"] == {"kind": "state", "state": "CLOSED"}
        assert [eid for eid, _ in await log.after("c1", "0-0")] == ids
        # Followed from the start, each wake-up is the next event; a stale one is not.
        assert carried_event(notes[0], "0-0") == (ids[0], {"kind": "state", "state": "BOT"})
        assert carried_event(notes[1], "0-0") is None  # a gap: read the stream instead
        assert already_sent(notes[0], ids[1]) and not already_sent(notes[1], ids[0])
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.delete(keys.events("c1"))


async def test_a_socket_that_missed_an_event_still_gets_every_event_in_order(gateway) -> None:  # type: ignore[no-untyped-def]
    c = WidgetClient(gateway.ws_url)
    try:
        await c.connect()
        await c.say("xin chào shop")
        await c.bot_reply()
        cid = c.conversation_id
        assert cid
        events, log = gateway.gw.keys.events(cid), gateway.gw.event_log
        # An event that reaches the stream without its wake-up (lost on the way) ...
        missed = await gateway.gw.redis.client.xadd(
            events, {"e": wire_json.dumps({"kind": "state", "state": "BOT"})}
        )
        # ... and the next one, whose wake-up names the missed one as its predecessor.
        last = await log.append(cid, {"kind": "state", "state": "BOT"})

        await c.expect(lambda f: f["type"] == "event" and f["eid"] == last, timeout=10)
        delivered = [f["eid"] for f in c.frames if f["type"] == "event"]
        stream = [eid for eid, _ in await log.after(cid, "0-0")]
        assert delivered == stream  # every event once, in stream order
        assert str(missed) in delivered
    finally:
        await c.close()
