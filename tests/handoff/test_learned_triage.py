"""The learned severity model beside the lexicon, read the way the gateway reads it: each
message parsed by the real NLU service (project model), then triaged with its context.

Phrases are the issue's own examples (which no writer of the corpus saw) and our own
paraphrases of them; hazards must be flagged (critical, or the quick safety question), hard
negatives must not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.core.settings import Settings
from nlu.client import NLUClient
from nlu.triage.corpus_eval import Turn, conversation_verdict
from nlu.triage.triage import Triage, TriageResult

PROJECT_ROOT = Path(__file__).resolve().parents[2]

HAZARDS = [
    # the examples: symptoms, no hazard word
    "charging overnight and this morning the back glass is pushed up, there's a gap along the edge",
    "tối qua cắm sạc qua đêm, sáng ra lưng máy cộm lên, kính sau hở ra một khe",
    "too hot to hold even after I turned it off, and there's a weird sweet smell",
    "earbuds case is hissing and smells like chemicals",
    "để trong túi quần nóng rát, cầm không nổi, đùi đỏ ửng",
    "sạc mà sợ nổ quá",
    # our paraphrases
    "my laptop lid won't close flat anymore, the trackpad is lifting up",
    "toi qua sac dem sang day thay lung may cong len ho ca mep",
    "cục sạc dự phòng kêu xì xì rồi có mùi ngọt ngọt lạ lắm",
    "the usb port on the charger looks melted and black around the edges",
    "bé nhà mình vừa ngậm viên pin cúc áo trong đồ chơi",
    "dt dang sac thi nong ran ko cam dc luon, sợ quá",
]

HARD_NEGATIVES = [
    # the examples
    "is the case available in smoke grey?",
    "honestly shocked how cheap the S23 is",
    "chơi Free Fire thấy hơi nóng",
    "can I bring a 20000mAh power bank on a plane?",
    "loa nghe nhạc cứ nổ lẹt xẹt",
    # our paraphrases
    "deal hôm nay nổ quá shop ơi, còn hàng không",
    "iphone 15 cháy hàng chưa ạ",
    "ốp lưng màu khói còn không shop",
    "shop nổ đơn quá ha, bao giờ giao cho mình",
    "máy chơi game lâu hơi ấm lên thôi, có sao không",
]

TWO_MESSAGE_HAZARDS = [
    (["máy nóng quá"], "giờ có mùi khét"),
    (["my phone gets warm when I charge it"], "now the back is bulging out"),
    (["dt e sac tu toi qua"], "gio mat lung no phong len ho ca vien"),
]


def _flagged(t: TriageResult) -> bool:
    return t.severity == "critical" or t.ask


async def _verdict(
    client: NLUClient, triage: Triage, settings: Settings, texts: list[str]
) -> TriageResult:
    n = settings.triage.model.context_messages
    turns = []
    for i, text in enumerate(texts):
        r = await client.parse(text, context=texts[max(0, i - n) : i])
        assert r.severity is not None, "the project model carries no severity verdict"
        turns.append(Turn(text, r.intent, r.confidence, r.severity))
    return conversation_verdict(triage, turns)


@pytest.fixture(scope="module")
def triage(settings: Settings) -> Triage:
    return Triage.from_settings(settings)


async def test_hazards_by_symptom_are_flagged(nlu_url: str, triage: Triage, settings) -> None:  # type: ignore[no-untyped-def]
    async with NLUClient(nlu_url) as client:
        missed = [t for t in HAZARDS if not _flagged(await _verdict(client, triage, settings, [t]))]
    assert missed == []


async def test_hard_negatives_are_not_flagged(nlu_url: str, triage: Triage, settings) -> None:  # type: ignore[no-untyped-def]
    async with NLUClient(nlu_url) as client:
        flagged = {}
        for text in HARD_NEGATIVES:
            v = await _verdict(client, triage, settings, [text])
            if _flagged(v):
                flagged[text] = v.reasons
    assert flagged == {}


async def test_a_hazard_told_over_two_messages(nlu_url: str, triage: Triage, settings) -> None:  # type: ignore[no-untyped-def]
    async with NLUClient(nlu_url) as client:
        for history, last in TWO_MESSAGE_HAZARDS:
            v = await _verdict(client, triage, settings, [*history, last])
            assert _flagged(v), (history, last, v.reasons)
            alone = await _verdict(client, triage, settings, history)
            assert alone.severity != "critical", history  # the first message alone is not


async def test_every_verdict_names_what_decided_it(nlu_url: str, triage: Triage, settings) -> None:  # type: ignore[no-untyped-def]
    async with NLUClient(nlu_url) as client:
        v = await _verdict(client, triage, settings, [HAZARDS[0]])
        assert any(r.startswith("severity model: critical") for r in v.reasons), v.reasons
        v = await _verdict(client, triage, settings, ["pin bị phồng to rồi"])
        assert any(r.startswith("hazard term") for r in v.reasons), v.reasons


async def test_parse_carries_severity_under_careline(nlu_url: str) -> None:
    async with NLUClient(nlu_url) as client:
        r = await client.parse("máy nóng quá")
        alone = r.raw["careline"]
        assert set(alone) >= {"severity", "queue", "scores", "language", "model"}
        assert set(alone["scores"]["severity"]) == {"critical", "high", "normal", "low"}
        assert abs(sum(alone["scores"]["severity"].values()) - 1) < 1e-3
        with_context = await client.parse("máy nóng quá", context=["giờ có mùi khét"])
        assert with_context.severity.critical > r.severity.critical  # the context counts


async def test_parse_rejects_a_bad_context(nlu_url: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for context, words in [
            ("not a list", "at most"),
            (["ok", 3], "context[1]"),
            (["x"] * 9, "at most"),
            (["\ud800"], "lone surrogate"),
        ]:
            body = json.dumps({"text": "hi", "context": context})
            async with http.post(nlu_url + "/model/parse", data=body) as r:
                assert r.status == 400, context
                assert words in (await r.json())["message"]


async def test_careline_triage_cli_gives_the_gateway_verdict(
    nlu_url: str, triage: Triage, settings: Settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    sample = [{"text": t} for t in [*HAZARDS[:4], *HARD_NEGATIVES[:4]]]
    sample += [{"text": last, "history": h} for h, last in TWO_MESSAGE_HAZARDS[:2]]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in sample))
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli", "triage", "--jsonl", str(path), "--url", nlu_url],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    got = [json.loads(line) for line in out.splitlines()]
    async with NLUClient(nlu_url) as client:
        for obj, line in zip(sample, got, strict=True):
            v = await _verdict(client, triage, settings, [*obj.get("history", []), obj["text"]])
            assert (line["severity"], line["queue"], line["ask"]) == (v.severity, v.queue, v.ask)
            assert line["reasons"] == list(v.reasons)
