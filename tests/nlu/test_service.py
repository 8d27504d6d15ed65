"""The NLU service, over HTTP, serving a real model trained on the project data."""

from __future__ import annotations

import aiohttp
import pytest

from bot.core.settings import Settings
from nlu.datasets import Example, load_rasa_nlu

pytestmark = pytest.mark.nlu

# Held-out accuracy floors per slice. The held-out examples were never trained on.
SLICE_FLOOR = {"lang:en": 0.85, "vi:diacritics": 0.85, "vi:no-diacritics": 0.85}


async def _parse(http: aiohttp.ClientSession, url: str, text: str) -> dict:
    async with http.post(url + "/model/parse", json={"text": text}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_heldout_examples_land_on_their_intent_in_every_slice(
    settings: Settings, nlu_url: str
) -> None:
    examples = load_rasa_nlu(settings.path(settings.nlu.heldout))
    assert len(examples) >= 300
    hits: dict[str, list[bool]] = {}
    misses: list[tuple[Example, str]] = []
    async with aiohttp.ClientSession() as http:
        for ex in examples:
            got = (await _parse(http, nlu_url, ex.text))["intent"]["name"]
            for s in ex.slices:
                hits.setdefault(s, []).append(got == ex.intent)
            if got != ex.intent:
                misses.append((ex, got))
    accuracy = {s: sum(v) / len(v) for s, v in hits.items()}
    detail = "\n".join(f"  {ex.text!r}: {ex.intent} -> {got}" for ex, got in misses[:40])
    for s, floor in SLICE_FLOOR.items():
        assert accuracy[s] >= floor, f"{s} accuracy {accuracy[s]:.3f} < {floor}\n{detail}"


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        # Each of these is in data/heldout (checked below), so none was trained on.
        ("máy của tôi vừa phát nổ", "hazard_explosion"),
        ("pin phong len r", "hazard_swollen_battery"),
        ("there's smoke coming from my phone", "hazard_fire_smoke"),
    ],
)
async def test_hazard_phrasings_from_heldout(
    settings: Settings, nlu_url: str, text: str, intent: str
) -> None:
    heldout = {ex.text for ex in load_rasa_nlu(settings.path(settings.nlu.heldout))}
    train = {ex.text for ex in load_rasa_nlu(settings.path(settings.nlu.data))}
    if text not in heldout or text in train:
        pytest.fail(f"test case must be a held-out example: {text!r}")
    async with aiohttp.ClientSession() as http:
        assert (await _parse(http, nlu_url, text))["intent"]["name"] == intent


async def test_parse_response_has_rasa_shape_plus_our_keys(nlu_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        data = await _parse(http, nlu_url, "shop ơi cho mình hỏi giờ mở cửa")
    assert data["text"] == "shop ơi cho mình hỏi giờ mở cửa"
    assert set(data["intent"]) >= {"name", "confidence"}
    assert 0.0 <= data["intent"]["confidence"] <= 1.0
    ranking = [r["confidence"] for r in data["intent_ranking"]]
    assert ranking == sorted(ranking, reverse=True) and len(ranking) > 1
    assert isinstance(data["entities"], list)
    assert data["careline"]["language"] == "vi"
    assert len(data["careline"]["model"]) == 16


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"", 400, "empty body"),
        (b"{not json", 400, "not valid JSON"),
        (b"\xff\xfe\x00", 400, "not valid JSON"),
        (b'["text"]', 400, "JSON object"),
        (b'{"message": "hi"}', 400, "missing field 'text'"),
        (b'{"text": 42}', 400, "must be a string"),
        (b'{"text": "   "}', 400, "is empty"),
        (b'{"text": "hi", "message_id": 7}', 400, "message_id"),
        (b'{"text": "hi \\ud800"}', 400, "lone surrogate"),
    ],
)
async def test_bad_bodies_get_clear_4xx_json(
    nlu_url: str, body: bytes, status: int, says: str
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            nlu_url + "/model/parse", data=body, headers={"Content-Type": "application/json"}
        ) as r,
    ):
        assert r.status == status
        err = await r.json()
    assert err["status"] == "failure" and err["code"] == status
    assert says in err["message"]


async def test_text_and_body_limits(settings: Settings, nlu_url: str) -> None:
    limit = settings.nlu.max_text_chars
    async with aiohttp.ClientSession() as http:
        async with http.post(nlu_url + "/model/parse", json={"text": "a" * (limit + 1)}) as r:
            assert r.status == 413
            assert f"longer than {limit}" in (await r.json())["message"]
        async with http.post(nlu_url + "/model/parse", json={"text": "a" * limit}) as r:
            assert r.status == 200  # exactly at the limit is fine
        huge = b'{"text": "' + b"x" * (settings.nlu.max_body_bytes + 10) + b'"}'
        async with http.post(nlu_url + "/model/parse", data=huge) as r:
            assert r.status == 413
            assert "larger than" in (await r.json())["message"]
        async with http.get(nlu_url + "/model/parse") as r:
            assert r.status == 405
            assert (await r.json())["status"] == "failure"
        async with http.get(nlu_url + "/no/such/path") as r:
            assert r.status == 404
            assert (await r.json())["code"] == 404


async def test_health_ready_version_metrics(nlu_url: str, nlu_model) -> None:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as http:
        async with http.get(nlu_url + "/healthz") as r:
            assert r.status == 200
        async with http.get(nlu_url + "/readyz") as r:
            assert r.status == 200
            ready = await r.json()
        async with http.get(nlu_url + "/version") as r:
            version = await r.json()
        async with http.get(nlu_url + "/metrics") as r:
            metrics = await r.text()
    fingerprint = nlu_model.name.removeprefix("nlu-").removesuffix(".tar.gz")
    assert ready["model"] == fingerprint == version["model_fingerprint"]
    assert version["version"] == "3.6.21"
    assert "careline_nlu_parse_seconds_count" in metrics
    assert "careline_nlu_ready 1.0" in metrics
