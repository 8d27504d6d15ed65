"""Ask when unsure, end to end through the widget channel, the engine and the real NLU
service: a possible hazard gets the first safety step and a yes/no question; yes, or no
answer in time, sends the chat to the safety queue; no lets it go on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from bot.channels.widget_client import WidgetClient, wait_for
from bot.conversation.safety_check import NO, YES, answer_of
from bot.core.settings import Settings
from tests.support import (
    BACKENDS,
    RunningGateway,
    backend_settings,
    running_gateway,
    with_section,
)

WORRIED = "sạc mà sợ nổ quá"


def _timeout(s: Settings, seconds: float) -> Settings:
    model = s.triage.model.model_copy(update={"ask_timeout_s": seconds})
    return s.model_copy(update={"triage": s.triage.model_copy(update={"model": model})})


@pytest.fixture(params=BACKENDS)
async def quick_gateway(request, tmp_path, nlu_url: str) -> AsyncIterator[RunningGateway]:  # type: ignore[no-untyped-def]
    """A gateway whose safety question times out after 1 s, and that looks for questions
    Redis lost every half second."""
    async with backend_settings(request.param, tmp_path) as s:
        s = with_section(_timeout(s, 1.0), "handoff", reconcile_every_s=0.5)
        async with running_gateway(s, nlu_url) as g:
            yield g


ANSWER_WITHIN_S = 5.0  # long enough to answer in time on a loaded machine


@pytest.fixture(params=BACKENDS)
async def answering_gateway(request, tmp_path, nlu_url: str) -> AsyncIterator[RunningGateway]:  # type: ignore[no-untyped-def]
    """A gateway whose safety question times out after ANSWER_WITHIN_S."""
    async with (
        backend_settings(request.param, tmp_path) as s,
        running_gateway(_timeout(s, ANSWER_WITHIN_S), nlu_url) as g,
    ):
        yield g


async def _wipe_redis(g: RunningGateway) -> None:
    """Everything of this gateway in Redis is gone, as after a restart without persistence."""
    client, prefix = g.gw.redis.client, g.gw.settings.redis.prefix
    keys = [k async for k in client.scan_iter(f"{prefix}:*")]
    assert keys
    await client.delete(*keys)


async def _asked(c: WidgetClient) -> dict:
    await c.connect()
    await c.say(WORRIED)
    reply = await c.bot_reply()
    assert "phồng" in reply["text"] and "ngừng sạc" in reply["text"], reply["text"]
    assert [q["payload"] for q in reply["quick_replies"]] == [YES, NO]
    return reply


async def test_yes_sends_the_chat_to_safety_at_once(answering_gateway: RunningGateway) -> None:
    db, c = answering_gateway.gw.db, WidgetClient(answering_gateway.ws_url)
    try:
        await _asked(c)
        await c.say("Có", payload=YES)
        safety = await c.bot_reply()
        assert "114" in safety["text"]  # the emergency numbers, first
        await wait_for(lambda: _state(db, c.conversation_id, "WAITING_AGENT"))
        conv = await db.get_conversation(c.conversation_id)
        assert (conv.severity, conv.queue) == ("critical", "safety")
        esc = [e for e in await db.escalations(conv.id) if e.kind == "escalated"]
        assert "answered yes to the safety question" in esc[-1].reason
        assert "sợ nổ" in esc[-1].reason  # why it was asked, for the agent
    finally:
        await c.close()


async def test_no_lets_the_conversation_go_on(answering_gateway: RunningGateway) -> None:
    db, c = answering_gateway.gw.db, WidgetClient(answering_gateway.ws_url)
    try:
        await _asked(c)
        asked_at = time.monotonic()
        await c.say("không", payload=None)  # typed, not the button
        clear = await c.bot_reply()
        assert "Cảm ơn" in clear["text"]
        await wait_for(lambda: _processed(db, c.conversation_id))
        conv = await db.get_conversation(c.conversation_id)
        assert conv.state == "BOT" and conv.severity != "critical"
        notes = [e.note for e in await db.escalations(conv.id) if e.kind == "safety_question"]
        assert notes == ["asked", "answered no"]
        # the timeout no longer applies: nothing escalates after it would have fired
        await c.say("cảm ơn shop")
        await c.bot_reply()
        await asyncio.sleep(max(0.0, asked_at + ANSWER_WITHIN_S + 1.5 - time.monotonic()))
        conv = await db.get_conversation(c.conversation_id)
        assert conv.state == "BOT"
    finally:
        await c.close()


async def test_no_answer_in_time_goes_to_safety(quick_gateway: RunningGateway) -> None:
    db, c = quick_gateway.gw.db, WidgetClient(quick_gateway.ws_url)
    try:
        await _asked(c)
        await wait_for(lambda: _state(db, c.conversation_id, "WAITING_AGENT"), timeout=15)
        conv = await db.get_conversation(c.conversation_id)
        assert (conv.severity, conv.queue) == ("critical", "safety")
        esc = [e for e in await db.escalations(conv.id) if e.kind == "escalated"]
        assert len(esc) == 1 and "no answer to the safety question within 1 s" in esc[0].reason
    finally:
        await c.close()


async def test_a_question_redis_lost_still_times_out_to_safety(
    quick_gateway: RunningGateway,
) -> None:
    db, c = quick_gateway.gw.db, WidgetClient(quick_gateway.ws_url)
    try:
        await _asked(c)
        await _wipe_redis(quick_gateway)  # the pending question and its deadline are gone
        await wait_for(lambda: _state(db, c.conversation_id, "WAITING_AGENT"), timeout=15)
        conv = await db.get_conversation(c.conversation_id)
        assert (conv.severity, conv.queue) == ("critical", "safety")
        esc = [e for e in await db.escalations(conv.id) if e.kind == "escalated"]
        assert len(esc) == 1 and "no answer to the safety question within 1 s" in esc[0].reason
        assert "sợ nổ" in esc[0].reason
    finally:
        await c.close()


async def test_a_yes_after_redis_lost_the_question_goes_to_safety(tmp_path, nlu_url) -> None:  # type: ignore[no-untyped-def]
    async with backend_settings("sqlite", tmp_path) as s:
        s = with_section(_timeout(s, 600.0), "handoff", reconcile_every_s=0.5)
        async with running_gateway(s, nlu_url) as g:
            db, engine, c = g.gw.db, g.gw.engine, WidgetClient(g.ws_url)
            try:
                await _asked(c)
                await wait_for(
                    lambda: _pending(engine, c.conversation_id)
                )  # stored after it is sent
                before = await engine.safety_checks.pending(c.conversation_id)
                await _wipe_redis(g)
                await wait_for(lambda: _pending(engine, c.conversation_id), timeout=15)
                after = await engine.safety_checks.pending(c.conversation_id)
                assert after.message_id == before.message_id
                assert after.deadline == pytest.approx(before.deadline, abs=1.0)
                await c.say("Có", payload=YES)
                await c.bot_reply()
                await wait_for(lambda: _state(db, c.conversation_id, "WAITING_AGENT"))
                conv = await db.get_conversation(c.conversation_id)
                assert (conv.severity, conv.queue) == ("critical", "safety")
            finally:
                await c.close()


async def test_a_question_the_chat_left_is_not_brought_back(quick_gateway: RunningGateway) -> None:
    """Asking for a person while the question waits ends it; Redis lost, back with the bot,
    the old question must not come back and send the chat to safety."""
    db, engine, c = quick_gateway.gw.db, quick_gateway.gw.engine, WidgetClient(quick_gateway.ws_url)
    try:
        await _asked(c)
        await c.say("cho mình gặp nhân viên", payload="intent:request_human")
        await wait_for(lambda: _state(db, c.conversation_id, "WAITING_AGENT"))
        await _wipe_redis(quick_gateway)
        await engine.return_to_bot(c.conversation_id)
        await asyncio.sleep(2.5)  # several recovery passes, and past the 1 s deadline
        conv = await db.get_conversation(c.conversation_id)
        assert conv.state == "BOT"
        reasons = [e.reason or "" for e in await db.escalations(conv.id)]
        assert not any("no answer to the safety question" in r for r in reasons), reasons
    finally:
        await c.close()


def test_typed_answers() -> None:
    assert answer_of("Có", None) is True
    assert answer_of("co a", None) is True
    assert answer_of("yes it is swollen", None) is True
    assert answer_of("ko", None) is False
    assert answer_of("No, it's fine", None) is False
    assert answer_of("cho mình hỏi giá iphone 15 bao nhiêu vậy shop ơi", None) is None
    assert answer_of("", YES) is True and answer_of("", NO) is False


async def _state(db, conversation_id: str, state: str) -> bool:  # type: ignore[no-untyped-def]
    return (await db.get_conversation(conversation_id)).state == state


async def _processed(db, conversation_id: str) -> bool:  # type: ignore[no-untyped-def]
    return not await db.unprocessed_customer_messages(conversation_id=conversation_id)


async def _pending(engine, conversation_id: str) -> bool:  # type: ignore[no-untyped-def]
    return await engine.safety_checks.pending(conversation_id) is not None
