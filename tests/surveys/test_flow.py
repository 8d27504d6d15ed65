"""The survey at close, end to end: the real gateway (widget channel, engine, inbox worker,
real NLU), real Redis, and SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from bot.channels.widget_client import WidgetClient, wait_for
from bot.core.messages import InboundMessage
from bot.core.store.models import Message, SurveyResponse, utcnow
from tests.support import backend_settings, running_gateway, with_section


async def _state(c: WidgetClient, state: str) -> None:
    await c.expect(
        lambda f: f["type"] == "event" and f["event"] == {"kind": "state", "state": state}
    )


def _payloads(message: dict[str, Any]) -> list[str]:
    return [q["payload"] for q in message.get("quick_replies") or []]


async def _survey(gateway: Any, conversation_id: str) -> Any:
    return await gateway.gw.survey_flow.store.get(conversation_id)


async def _expire(gateway: Any, conversation_id: str) -> None:
    """Move the survey's deadline into the past (instead of waiting 24 hours)."""
    table = SurveyResponse.__table__  # type: ignore[attr-defined]
    async with gateway.gw.db.sql_engine.begin() as conn:
        await conn.execute(
            update(table)
            .where(table.c.conversation_id == conversation_id)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )


async def _start_chat(c: WidgetClient, text: str = "bao hanh bao lau vay shop") -> None:
    await c.connect()
    await c.say(text)
    await c.bot_reply()


async def test_widget_survey_with_buttons_typed_answers_and_a_double_click(gateway) -> None:  # type: ignore[no-untyped-def]
    db = gateway.gw.db
    c = WidgetClient(gateway.ws_url)
    try:
        await _start_chat(c)
        await c.send_frame({"type": "end"})
        ces = await c.bot_reply()  # the question goes out first, then the state changes
        await _state(c, "SURVEY")
        assert "dễ dàng" in ces["text"]  # Vietnamese, the customer's language
        assert _payloads(ces) == [f"survey:ces:{v}" for v in range(1, 8)] + ["survey:skip"]

        # A double click: the same button twice (two messages, as a real widget would send).
        await c.say("6", payload="survey:ces:6")
        await c.say("6", payload="survey:ces:6")
        csat = await c.bot_reply()
        assert _payloads(csat) == [f"survey:csat:{v}" for v in range(1, 6)] + ["survey:skip"]

        await c.say("5 sao")  # typed
        comment = await c.bot_reply()
        assert _payloads(comment) == ["survey:skip"]
        await c.say('=HYPERLINK("http://x") nhân viên nhiệt tình')
        thanks = await c.bot_reply()
        assert "Cảm ơn" in thanks["text"]
        await _state(c, "CLOSED")

        row = await _survey(gateway, c.conversation_id)
        assert (row.status, row.ces, row.csat, row.nps) == ("completed", 6, 5, None)
        assert row.comment.startswith("=HYPERLINK")  # stored as typed; exports neutralize
        assert (row.channel, row.language, row.bot_only, row.reopened) == (
            "widget",
            "vi",
            True,
            False,
        )
        assert row.resolved_at is not None and row.answered_at is not None
        # Exactly one question each, one thanks: the double click said nothing.
        bot_texts = [m.text for m in await db.transcript(c.conversation_id) if m.sender == "bot"]
        assert sum("dễ dàng" in t for t in bot_texts) == 1
        assert sum("hài lòng với dịch vụ" in t for t in bot_texts) == 1
        assert sum(t.startswith("Cảm ơn bạn đã đánh giá") for t in bot_texts) == 1

        # A late click on an old button: politely refused, nothing changes, no reopen.
        await c.say("1", payload="survey:csat:1")
        late = await c.bot_reply()
        assert "đã đánh giá" in late["text"]
        conv = await db.get_conversation(c.conversation_id)
        assert conv.state == "CLOSED" and conv.reopen_count == 0
        assert (await _survey(gateway, c.conversation_id)).csat == 5
    finally:
        await c.close()


async def test_english_typed_answers_and_comment_skipped(gateway) -> None:  # type: ignore[no-untyped-def]
    c = WidgetClient(gateway.ws_url, locale="en")
    try:
        await _start_chat(c, "how long is the warranty on a new laptop?")
        await c.send_frame({"type": "end"})
        ces = await c.bot_reply()
        assert "How easy" in ces["text"]
        await c.say("very easy")
        assert "satisfied" in (await c.bot_reply())["text"]
        await c.say("meh")  # unclear and short: asked again, in English
        again = await c.bot_reply()
        assert "1 to 5" in again["text"] and "survey:csat:5" in _payloads(again)
        await c.say("4")
        await c.bot_reply()  # the comment question
        await c.say("no thanks")
        assert "Thank you" in (await c.bot_reply())["text"]
        await _state(c, "CLOSED")
        row = await _survey(gateway, c.conversation_id)
        assert (row.status, row.ces, row.csat, row.comment) == ("completed", 7, 4, None)
        assert row.language == "en"
    finally:
        await c.close()


async def test_skip_and_one_survey_per_conversation(gateway) -> None:  # type: ignore[no-untyped-def]
    c = WidgetClient(gateway.ws_url)
    try:
        await _start_chat(c)
        await c.send_frame({"type": "end"})
        await c.bot_reply()
        await c.say("bo qua")  # typed skip, no diacritics
        assert "Không sao" in (await c.bot_reply())["text"]
        await _state(c, "CLOSED")
        assert (await _survey(gateway, c.conversation_id)).status == "skipped"

        # Reopened and ended again: no second survey; the row notes the reopen.
        await c.say("cho mình hỏi giờ mở cửa")
        await _state(c, "BOT")
        await c.bot_reply()
        await c.send_frame({"type": "end"})
        await _state(c, "CLOSED")
        row = await _survey(gateway, c.conversation_id)
        assert row.status == "skipped" and row.reopened is True
    finally:
        await c.close()


async def test_late_answers_after_expiry_are_refused(gateway) -> None:  # type: ignore[no-untyped-def]
    c = WidgetClient(gateway.ws_url)
    try:
        await _start_chat(c)
        await c.send_frame({"type": "end"})
        await c.bot_reply()
        await _expire(gateway, c.conversation_id)
        await c.say("7", payload="survey:ces:7")
        refused = await c.bot_reply()
        assert "đã đóng" in refused["text"]
        await _state(c, "CLOSED")
        row = await _survey(gateway, c.conversation_id)
        assert (row.status, row.ces) == ("expired", None)
    finally:
        await c.close()


async def test_sweeper_expires_surveys_and_resolves_silent_bot_chats(gateway) -> None:  # type: ignore[no-untyped-def]
    db, sweeper = gateway.gw.db, gateway.gw.surveys
    waiting, silent = WidgetClient(gateway.ws_url), WidgetClient(gateway.ws_url)
    try:
        await _start_chat(waiting)
        await waiting.send_frame({"type": "end"})
        await waiting.bot_reply()
        await _expire(gateway, waiting.conversation_id)

        await _start_chat(silent)
        old = utcnow() - timedelta(minutes=gateway.settings.surveys.idle_close_minutes + 5)
        msg_t = Message.__table__  # type: ignore[attr-defined]
        async with db.sql_engine.begin() as conn:  # as if the customer left 35 minutes ago
            await conn.execute(
                update(msg_t)
                .where(msg_t.c.conversation_id == silent.conversation_id)
                .values(created_at=old)
            )
        await db.update_conversation(silent.conversation_id, created_at=old)

        await sweeper.sweep()
        assert (await db.get_conversation(waiting.conversation_id)).state == "CLOSED"
        assert (await _survey(gateway, waiting.conversation_id)).status == "expired"
        assert (await db.get_conversation(silent.conversation_id)).state == "SURVEY"
        question = await silent.bot_reply()
        assert "survey:ces:7" in _payloads(question)
    finally:
        await waiting.close()
        await silent.close()


async def test_a_new_question_during_the_survey_goes_to_the_bot(gateway) -> None:  # type: ignore[no-untyped-def]
    c = WidgetClient(gateway.ws_url)
    try:
        await _start_chat(c)
        await c.send_frame({"type": "end"})
        await c.bot_reply()
        await c.say("shop ơi cho mình hỏi giờ mở cửa hôm nay đến mấy giờ vậy")
        await _state(c, "BOT")
        answer = await c.bot_reply()
        assert "8:00" in answer["text"]
        row = await _survey(gateway, c.conversation_id)
        assert row.status == "abandoned" and row.reopened is True
    finally:
        await c.close()


async def test_survey_on_telegram_conversation(gateway) -> None:  # type: ignore[no-untyped-def]
    """The flow is channel-neutral: a Telegram chat gets the same questions with buttons
    (the Telegram channel turns quick replies into inline keyboards) and its answers count."""
    engine, db = gateway.gw.engine, gateway.gw.db
    chat = str(uuid.uuid4().int % 10**9)

    async def send(text: str, payload: str | None = None) -> None:
        await engine.accept(
            InboundMessage("telegram", chat, text, uuid.uuid4().hex, locale="vi", payload=payload)
        )

    await send("bảo hành bao lâu vậy shop")
    conv_id = (await engine.accept(
        InboundMessage("telegram", chat, "cảm ơn", uuid.uuid4().hex, locale="vi")
    )).conversation_id  # fmt: skip

    async def bot_messages() -> list[Any]:
        return [m for m in await db.transcript(conv_id) if m.sender == "bot"]

    await wait_for(lambda: _all_processed(db, conv_id))
    await engine.end(conv_id)
    question = (await bot_messages())[-1]
    payloads = [q["payload"] for q in question.payload["quick_replies"]]
    assert payloads == [f"survey:ces:{v}" for v in range(1, 8)] + ["survey:skip"]
    await send("bảy", None)
    await wait_for(lambda: _has_text(db, conv_id, "hài lòng với dịch vụ"))
    await send("5", "survey:csat:5")
    await wait_for(lambda: _has_text(db, conv_id, "góp ý"))
    await send("Bỏ qua", "survey:skip")
    await wait_for(lambda: _closed(db, conv_id))
    row = await _survey(gateway, conv_id)
    assert (row.channel, row.status, row.ces, row.csat) == ("telegram", "completed", 7, 5)


async def _all_processed(db: Any, conv_id: str) -> bool:
    return all(m.processed_at for m in await db.transcript(conv_id) if m.sender == "customer")


async def _has_text(db: Any, conv_id: str, text: str) -> bool:
    return any(text in m.text for m in await db.transcript(conv_id) if m.sender == "bot")


async def _closed(db: Any, conv_id: str) -> bool:
    return (await db.get_conversation(conv_id)).state == "CLOSED"


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_nps_when_enabled(backend: str, tmp_path, nlu_url: str) -> None:  # type: ignore[no-untyped-def]
    async with backend_settings(backend, tmp_path) as s:
        s = with_section(s, "surveys", nps_enabled=True, ask_comment=False)
        async with running_gateway(s, nlu_url) as g:
            c = WidgetClient(g.ws_url, locale="en")
            try:
                await _start_chat(c, "what are your opening hours?")
                await c.send_frame({"type": "end"})
                await c.bot_reply()
                await c.say("5", payload="survey:ces:5")
                await c.bot_reply()
                await c.say("5", payload="survey:csat:5")
                nps = await c.bot_reply()
                assert "recommend" in nps["text"]
                assert _payloads(nps) == [f"survey:nps:{v}" for v in range(11)] + ["survey:skip"]
                await c.say("9/10")
                assert "Thank you" in (await c.bot_reply())["text"]
                await _state(c, "CLOSED")
                row = await _survey(g, c.conversation_id)
                assert (row.status, row.ces, row.csat, row.nps) == ("completed", 5, 5, 9)
            finally:
                await c.close()
