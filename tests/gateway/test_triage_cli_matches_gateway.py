"""`careline triage --jsonl` prints what a customer sending that text gets from the gateway:
the same sample through the real widget channel and engine, and through the CLI, agree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bot.channels.widget_client import WidgetClient, wait_for
from bot.conversation.safety_check import YES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = [
    "charging overnight and this morning the back glass is pushed up, there's a gap along the edge",
    "pin dt bi phong r shop oi",
    "sạc mà sợ nổ quá",
    "is the case available in smoke grey?",
    "bảo hành bao lâu vậy shop",
    "tôi bị trừ tiền 2 lần mà vẫn chưa thấy đơn hàng đâu",
    "màn hình cảm ứng thỉnh thoảng bị loạn",
]


async def test_cli_verdict_is_what_the_gateway_does(gateway, nlu_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "sample.jsonl"
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in SAMPLE))
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli", "triage", "--jsonl", str(path), "--url", nlu_url],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    verdicts = [json.loads(line) for line in out.splitlines()]
    db = gateway.gw.db
    for text, v in zip(SAMPLE, verdicts, strict=True):
        c = WidgetClient(gateway.ws_url, locale="en" if text.isascii() else "vi")
        try:
            await c.connect()
            await c.say(text)
            reply = await c.bot_reply()
            cid = c.conversation_id
            await wait_for(lambda cid=cid: _processed(db, cid))
            conv = await db.get_conversation(cid)
            asked = [q["payload"] for q in reply.get("quick_replies") or []][:1] == [YES]
            assert asked == v["ask"], (text, v)
            if v["severity"] == "critical":
                await wait_for(lambda cid=cid: _escalated(db, cid))
                conv = await db.get_conversation(cid)
                assert (conv.severity, conv.queue) == ("critical", "safety"), text
            else:
                assert conv.severity == v["severity"], (text, v)
        finally:
            await c.close()


async def _processed(db, conversation_id: str) -> bool:  # type: ignore[no-untyped-def]
    return not await db.unprocessed_customer_messages(conversation_id=conversation_id)


async def _escalated(db, conversation_id: str) -> bool:  # type: ignore[no-untyped-def]
    return (await db.get_conversation(conversation_id)).state == "WAITING_AGENT"
