"""The quick safety question on Telegram (fake Bot API): the buttons, a tap on yes, and the
no-answer timeout."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.channels.widget_client import wait_for
from bot.core.settings import Settings
from tests.support import BACKENDS
from tests.telegram.harness import Harness, telegram_gateway

WORRIED = "sạc mà sợ nổ quá"


def _ask_timeout(seconds: float) -> Callable[[Settings], Settings]:
    def adjust(s: Settings) -> Settings:
        model = s.triage.model.model_copy(update={"ask_timeout_s": seconds})
        return s.model_copy(update={"triage": s.triage.model_copy(update={"model": model})})

    return adjust


@pytest.fixture(params=BACKENDS)
async def tg(
    request: pytest.FixtureRequest, tmp_path: Path, nlu_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Harness]:
    """The question times out after 1 s."""
    async with telegram_gateway(
        request.param, tmp_path, nlu_url, monkeypatch, adjust=_ask_timeout(1.0)
    ) as h:
        yield h


@pytest.fixture(params=BACKENDS)
async def tg_answering(
    request: pytest.FixtureRequest, tmp_path: Path, nlu_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Harness]:
    """Long enough to answer in time on a loaded machine."""
    async with telegram_gateway(
        request.param, tmp_path, nlu_url, monkeypatch, adjust=_ask_timeout(5.0)
    ) as h:
        yield h


async def _asked(tg: Harness):  # type: ignore[no-untyped-def]
    lan = tg.user(language_code="vi")
    await lan.say(lan.text(WORRIED))
    (question,) = await lan.received(1)
    assert "phồng" in question and "ngừng sạc" in question
    (sent,) = tg.fake.sent(lan.chat_id)
    rows = sent.params["reply_markup"]["inline_keyboard"]
    assert [row[0]["text"] for row in rows] == ["Có", "Không"]
    keyboard = {
        "message_id": 77,
        "text": sent.params["text"],
        "reply_markup": {"inline_keyboard": rows},
    }
    return lan, keyboard


async def test_yes_on_telegram_goes_to_safety(tg_answering: Harness) -> None:
    tg = tg_answering
    lan, keyboard = await _asked(tg)
    await lan.say(lan.press(keyboard, 0))  # "Có"
    texts = await lan.received(2)
    assert "114" in texts[1]  # the emergency numbers first, at once
    conv = await tg.conversation_of(lan)
    await wait_for(lambda: _state(tg, lan, "WAITING_AGENT"))
    conv = await tg.conversation_of(lan)
    assert (conv.severity, conv.queue) == ("critical", "safety")
    esc = [e for e in await tg.db.escalations(conv.id) if e.kind == "escalated"]
    assert "answered yes to the safety question" in esc[-1].reason


async def test_no_answer_on_telegram_goes_to_safety(tg: Harness) -> None:
    lan, _ = await _asked(tg)
    await wait_for(lambda: _state(tg, lan, "WAITING_AGENT"), timeout=15)
    texts = await lan.received(2)
    assert any("114" in t for t in texts[1:])
    conv = await tg.conversation_of(lan)
    esc = [e for e in await tg.db.escalations(conv.id) if e.kind == "escalated"]
    assert len(esc) == 1 and "no answer to the safety question within 1 s" in esc[0].reason


async def _state(tg: Harness, user, state: str) -> bool:  # type: ignore[no-untyped-def]
    conv = await tg.conversation_of(user)
    return conv is not None and conv.state == state
