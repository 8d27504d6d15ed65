"""Typed and clicked survey answers in Vietnamese (with and without diacritics) and English."""

from __future__ import annotations

import pytest

from bot.core.settings import Settings
from surveys.answers import Comment, Score, Skip, Unclear, parse_answer
from surveys.setup import TEXTS
from surveys.texts import SurveyTexts


@pytest.fixture(scope="module")
def texts(settings: Settings) -> SurveyTexts:
    return SurveyTexts.load(settings.root / TEXTS, settings.business.placeholders())


@pytest.mark.parametrize(
    ("step", "text", "expected"),
    [
        ("csat", "5", Score("csat", 5)),
        ("csat", "năm", Score("csat", 5)),
        ("csat", "nam", Score("csat", 5)),
        ("csat", "5 sao", Score("csat", 5)),
        ("csat", "năm sao nhé", Score("csat", 5)),
        ("csat", "rat hai long", Score("csat", 5)),
        ("csat", "Rất hài lòng!", Score("csat", 5)),
        ("csat", "hài lòng", Score("csat", 4)),
        ("csat", "không hài lòng", Score("csat", 2)),
        ("csat", "ko hai long", Score("csat", 2)),
        ("csat", "4/5", Score("csat", 4)),
        ("csat", "very satisfied", Score("csat", 5)),
        ("csat", "five stars", Score("csat", 5)),
        ("csat", "6", Unclear(1)),  # out of the 1-5 scale: asked again, never clamped
        ("csat", "3 hoặc 4", Unclear(3)),  # two numbers: ambiguous
        ("ces", "7", Score("ces", 7)),
        ("ces", "bảy", Score("ces", 7)),
        ("ces", "rất dễ", Score("ces", 7)),
        ("ces", "rat de", Score("ces", 7)),
        ("ces", "không dễ", Score("ces", 2)),
        ("ces", "very easy", Score("ces", 7)),
        ("ces", "quite hard", Score("ces", 2)),
        ("ces", "rất hài lòng", Unclear(3)),  # a CSAT phrase: "hai" is not read as 2
        ("ces", "8", Unclear(1)),
        ("nps", "10", Score("nps", 10)),
        ("nps", "0", Score("nps", 0)),
        ("nps", "9/10", Score("nps", 9)),
        ("ces", "bỏ qua", Skip()),
        ("ces", "bo qua", Skip()),
        ("csat", "skip", Skip()),
        ("csat", "thôi", Skip()),
        ("comment", "không", Skip()),
        ("comment", "no", Skip()),
        ("comment", "Nhân viên rất nhiệt tình", Comment("Nhân viên rất nhiệt tình")),
        ("ces", "shop ơi iphone 15 pro còn hàng không ạ", Unclear(9)),
    ],
)
def test_typed_answers(texts: SurveyTexts, step: str, text: str, expected: object) -> None:
    assert parse_answer(step, text, None, texts) == expected


@pytest.mark.parametrize(
    ("step", "payload", "expected"),
    [
        ("ces", "survey:ces:6", Score("ces", 6)),
        ("csat", "survey:ces:6", Score("ces", 6)),  # a second click on an earlier question
        ("ces", "survey:skip", Skip()),
        ("ces", "survey:ces:9", Unclear(0)),  # forged: out of range
        ("ces", "survey:ces:-1", Unclear(0)),
        ("ces", "survey:drop table:1", Unclear(0)),
    ],
)
def test_button_payloads(texts: SurveyTexts, step: str, payload: str, expected: object) -> None:
    assert parse_answer(step, "whatever the button said", payload, texts) == expected
