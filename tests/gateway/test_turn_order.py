"""Turns under overload keep their order of arrival: once a replica's line is full and turns
spill to the inbox, a message that arrives later waits behind them, even when a place in
the replica's own line has come free meanwhile (taking it would overtake every spilled turn,
again and again, while the load lasts)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bot.channels.widget_client import WidgetClient
from bot.conversation.engine import LOCAL_TURNS_PER_SLOT
from tests.support import backend_settings, running_gateway, slow_nlu, with_section

# More than one slot's own line holds, plus what its inbox worker takes at once (2 × 1).
EARLY = LOCAL_TURNS_PER_SLOT + 2 + 20


async def test_a_later_message_is_answered_after_the_spilled_ones(
    tmp_path: Path, nlu_url: str
) -> None:
    async with (
        backend_settings("postgresql", tmp_path) as s,
        slow_nlu(nlu_url, 0.05) as slow_url,
    ):
        s = with_section(s, "conversation", workers=1)  # one turn at a time
        s = with_section(s, "widget", max_connections_per_ip=EARLY + 5)
        async with running_gateway(s, slow_url) as g:
            clients = [WidgetClient(g.ws_url) for _ in range(EARLY + 1)]
            answered: dict[int, float] = {}
            an_answer = asyncio.Event()

            async def answer_of(i: int) -> None:
                await clients[i].bot_reply(timeout=60)
                answered[i] = time.monotonic()
                an_answer.set()

            try:
                await asyncio.gather(*(c.connect() for c in clients))
                # All at once: the line fills, the rest spill to the inbox.
                await asyncio.gather(*(c.say("bảo hành bao lâu vậy shop") for c in clients[:EARLY]))
                await asyncio.gather(
                    *(c.expect(lambda f: f["type"] == "ack") for c in clients[:EARLY])
                )
                waits = [asyncio.create_task(answer_of(i)) for i in range(EARLY)]
                for _ in range(2):  # a turn ended (the next one answered): a place is free
                    an_answer.clear()
                    await an_answer.wait()
                await clients[EARLY].say("đổi trả trong bao nhiêu ngày")
                await clients[EARLY].expect(lambda f: f["type"] == "ack")
                await asyncio.gather(*waits, answer_of(EARLY))
            finally:
                await asyncio.gather(*(c.close() for c in clients))
            # One turn at a time, in the order they came: the late one is answered last.
            last = max(answered, key=answered.__getitem__)
            overtaken = sorted(i for i in range(EARLY) if answered[i] > answered[EARLY])
            assert last == EARLY and not overtaken, f"overtook {overtaken}"
