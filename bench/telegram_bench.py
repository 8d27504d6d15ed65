"""Telegram outbound benchmark: careline's durable outbox vs sending straight from PTB.

Why this exists: careline never sends a reply from the request path. Every message is stored
in SQL, a wake-up goes through a Redis stream, and a sender delivers it with a ledger row per
part. That is what makes outages, crashes and RetryAfter lose nothing. This measures what the
durability costs against the peer every PTB tutorial uses: `await bot.send_message(...)` right
where the reply is produced. Both send through python-telegram-bot to the same local fake Bot
API (tests/telegram/fake_bot_api.py) with the same simulated round trip and the same number
of requests in flight.

    .venv/bin/python bench/telegram_bench.py                      # 50 chats x 10 messages, SQLite
    .venv/bin/python bench/telegram_bench.py --db postgresql      # same on PostgreSQL

Reported per system: messages/s from the first message produced to the last one accepted by
the API, and p50/p99 latency from "produced" to "accepted by the API". Needs Redis on
127.0.0.1:6379 (and PostgreSQL with a `test` database for --db postgresql).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from telegram import Bot
from telegram.request import HTTPXRequest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.channels.telegram.ledger import DeliveryLedger
from bot.channels.telegram.sender import TelegramSender
from bot.channels.widget_client import wait_for
from bot.core.live.keys import Keys
from bot.core.live.outbound import Outbound
from bot.core.live.streams import EventLog
from bot.core.settings import TelegramOutboxSettings
from bot.core.store.db import Database
from bot.core.store.scratch import temporary_schema
from tests.telegram.fake_bot_api import TOKEN, FakeBotAPI

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Result:
    system: str
    messages: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def _bot(fake: FakeBotAPI, pool: int) -> Bot:
    request = HTTPXRequest(connection_pool_size=pool, read_timeout=10, connect_timeout=10,
                           pool_timeout=10)  # fmt: skip
    return Bot(TOKEN, base_url=f"{fake.url}/bot", request=request)


def _result(system: str, fake: FakeBotAPI, produced: dict[str, float], t0: float) -> Result:
    accepted = {c.params["text"]: c.at for c in fake.of("sendMessage")}
    lat = sorted((accepted[text] - at) * 1000 for text, at in produced.items())
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return Result(system, len(lat), max(accepted.values()) - t0, statistics.median(lat), p99)


async def peer(fake: FakeBotAPI, chats: int, per_chat: int, inflight: int) -> Result:
    """What a plain PTB bot does: send right where the reply is produced (each chat in order,
    `inflight` requests at once)."""
    bot = _bot(fake, inflight + 4)
    await bot.initialize()
    produced: dict[str, float] = {}
    slots = asyncio.Semaphore(inflight)

    async def chat(c: int) -> None:
        for i in range(per_chat):
            text = f"peer {c} {i}"
            async with slots:
                produced[text] = time.monotonic()
                await bot.send_message(chat_id=1000 + c, text=text)

    t0 = time.monotonic()
    await asyncio.gather(*(chat(c) for c in range(chats)))
    await bot.shutdown()
    return _result("PTB send_message (peer)", fake, produced, t0)


@asynccontextmanager
async def database(kind: str, tmp: Path) -> AsyncIterator[Database]:
    if kind == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp / 'bench.db'}")
        await db.migrate()
        yield db
        await db.close()
        return
    async with temporary_schema(PG_URL, "tgbench") as schema:
        db = Database(PG_URL, schema=schema)
        await db.migrate()
        yield db
        await db.close()


async def careline(
    fake: FakeBotAPI, chats: int, per_chat: int, inflight: int, db_kind: str
) -> Result:
    """Store + publish (stream event and outbox wake-up, as the transcript writer does), then
    the sender delivers; `inflight` conversations at once."""
    redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    keys = Keys(f"tgbench{uuid.uuid4().hex[:8]}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with database(db_kind, Path(tmp)) as db:
                event_log = EventLog(redis, keys)
                outbound = Outbound(redis, keys)
                outbound.register("telegram")
                bot = _bot(fake, inflight + 4)
                await bot.initialize()
                ready = asyncio.Event()
                ready.set()
                cfg = TelegramOutboxSettings(concurrency=inflight, poll_s=0.05)
                sender = TelegramSender(bot=bot, redis=redis, outbound=outbound, db=db,
                                        ledger=DeliveryLedger(db.sql_engine), cfg=cfg,
                                        consumer="bench", ready=ready)  # fmt: skip
                convs = []
                for c in range(chats):
                    customer = await db.get_or_create_customer("telegram", str(2000 + c))
                    convs.append(await db.create_conversation(customer.id, "telegram", "vi"))
                task = asyncio.create_task(sender.run())
                produced: dict[str, float] = {}

                async def chat(c: int) -> None:
                    for i in range(per_chat):
                        text = f"careline {c} {i}"
                        produced[text] = time.monotonic()
                        msg, _ = await db.add_message(convs[c].id, "agent", text)
                        await event_log.append(convs[c].id, {"kind": "message", "id": msg.id})
                        await outbound.notify("telegram", convs[c].id)

                t0 = time.monotonic()
                await asyncio.gather(*(chat(c) for c in range(chats)))
                total = chats * per_chat
                await wait_for(lambda: len(fake.of("sendMessage")) >= total, 600, every=0.01)
                await sender.stop(task)
                await bot.shutdown()
                return _result(f"careline outbox ({db_kind})", fake, produced, t0)
    finally:
        keys_left = [k async for k in redis.scan_iter(f"{keys.prefix}:*")]
        if keys_left:
            await redis.delete(*keys_left)
        await redis.aclose()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chats", type=int, default=50)
    ap.add_argument("--messages", type=int, default=10, help="per chat")
    ap.add_argument("--inflight", type=int, default=16, help="requests/conversations at once")
    ap.add_argument("--api-latency-ms", type=float, default=30.0, help="simulated round trip")
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    args = ap.parse_args()
    results = []
    for run in (peer, careline):
        fake = await FakeBotAPI(latency_s=args.api_latency_ms / 1000).start()
        try:
            extra = (args.db,) if run is careline else ()
            results.append(await run(fake, args.chats, args.messages, args.inflight, *extra))
        finally:
            await fake.close()
        print(f"done: {results[-1].system}", file=sys.stderr)
    p, c = results
    print(f"{args.chats} chats x {args.messages} messages, {args.inflight} in flight, "
          f"API round trip {args.api_latency_ms:.0f} ms\n")  # fmt: skip
    print("| system | messages | msg/s | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r.system} | {r.messages} | {r.rate:.1f} | {r.p50_ms:.0f} | {r.p99_ms:.0f} |")
    print(f"| careline/peer | | {c.rate / p.rate:.2f}× | {c.p50_ms / p.p50_ms:.2f}× | "
          f"{c.p99_ms / p.p99_ms:.2f}× |")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
