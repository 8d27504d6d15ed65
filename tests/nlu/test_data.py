"""The training data's contract: coverage, balance, languages, and a clean held-out split."""

from __future__ import annotations

import re
import string
from collections import Counter

import pytest
import yaml

from bot.core.settings import Settings
from nlu.datasets import load_rasa_nlu
from nlu.vi.text import fold, has_diacritics, nfc

INTENTS = {
    "greet", "goodbye", "thank", "affirm", "deny", "bot_challenge", "out_of_scope",
    "request_human", "complain_staff", "order_status", "cancel_order", "delivery_info",
    "stock_availability", "return_exchange", "warranty_policy", "warranty_claim",
    "store_hours", "store_location", "price_inquiry", "promotion", "installment",
    "payment_problem", "invoice_request", "account_login", "fault_touch_screen",
    "fault_battery_drain", "fault_overheating", "fault_wont_turn_on", "fault_camera",
    "fault_connectivity", "fault_speaker", "hazard_explosion", "hazard_fire_smoke",
    "hazard_swollen_battery", "hazard_electric_shock",
}  # fmt: skip


def _blind(t: str) -> str:
    """Diacritic-, case- and punctuation-blind: 'Pin xuống nhanh!' == 'pin xuong nhanh'."""
    return " ".join(re.findall(r"\w+", fold(t)))


@pytest.fixture(scope="module")
def train(settings: Settings):  # type: ignore[no-untyped-def]
    return load_rasa_nlu(settings.path(settings.nlu.data))


@pytest.fixture(scope="module")
def heldout(settings: Settings):  # type: ignore[no-untyped-def]
    return load_rasa_nlu(settings.path(settings.nlu.heldout))


def test_every_intent_has_enough_examples_in_both_languages(train) -> None:  # type: ignore[no-untyped-def]
    assert {ex.intent for ex in train} == INTENTS
    vi = Counter(ex.intent for ex in train if ex.language == "vi")
    en = Counter(ex.intent for ex in train if ex.language == "en")
    plain = Counter(
        ex.intent for ex in train if ex.language == "vi" and not has_diacritics(ex.text)
    )
    for intent in INTENTS:
        assert vi[intent] >= 15, f"{intent}: {vi[intent]} Vietnamese examples"
        assert en[intent] >= 10, f"{intent}: {en[intent]} English examples"
        assert plain[intent] * 3 >= vi[intent], f"{intent}: under a third without diacritics"


def test_chat_abbreviations_are_represented(train) -> None:  # type: ignore[no-untyped-def]
    words = Counter(w for ex in train if ex.language == "vi" for w in ex.text.lower().split())
    for abbr in ("ko", "k", "dc", "j", "sp"):
        assert words[abbr] >= 3, f"too few examples typed with '{abbr}'"
    assert any("shop ơi" in ex.text.lower() or "shop oi" in ex.text.lower() for ex in train)


def test_heldout_is_disjoint_from_training_and_covers_every_intent(train, heldout) -> None:  # type: ignore[no-untyped-def]
    # the model folds diacritics and ignores punctuation, so the same words typed without
    # accents would be a leak just the same
    seen = {_blind(ex.text) for ex in train}
    leaked = [ex.text for ex in heldout if _blind(ex.text) in seen]
    assert not leaked, f"held-out examples also in training: {leaked}"
    assert {ex.intent for ex in heldout} == INTENTS
    slices = Counter(s for ex in heldout for s in ex.slices)
    assert slices["vi:diacritics"] >= 70 and slices["vi:no-diacritics"] >= 70
    assert slices["lang:en"] >= 70


def test_vietnamese_text_is_nfc(train, heldout) -> None:  # type: ignore[no-untyped-def]
    bad = [ex.text for ex in [*train, *heldout] if nfc(ex.text) != ex.text]
    assert not bad, f"not NFC (decomposed accents): {bad[:5]}"


def test_responses_cover_every_answerable_intent_in_both_languages(settings: Settings) -> None:
    doc = yaml.safe_load(settings.path(settings.nlu.responses).read_text(encoding="utf-8"))
    responses = doc["responses"]
    business = set(settings.business.placeholders())
    # system lines the engine fills with more than business details
    extra = {
        "clarify": {"options"},
        "queue_position": {"position"},
        "queue_wait": {"minutes"},
        "agent_joined": {"agent"},  # the name of the person who took over
        "callback_saved": {"contact"},  # the phone or e-mail the customer left
        "safety_promise_hotline": {"safety_hotline"},  # the safety queue's 24/7 line
    }
    for intent in INTENTS | {"_system"}:
        assert intent in responses, f"no response for {intent}"
    for key, entry in responses.items():
        items = (
            entry.items()
            if key != "_system"
            else ((f"{name}.{lang}", text) for name, v in entry.items() for lang, text in v.items())
        )
        langs = set(entry) if key != "_system" else {"vi", "en"}
        assert {"vi", "en"} <= langs, f"{key}: missing a language"
        for lang, text in items:
            assert isinstance(text, str) and text.strip(), f"{key}.{lang} empty"
            names = {n for _, n, _, _ in string.Formatter().parse(text) if n}
            allowed = (
                business | extra.get(lang.split(".")[0], set()) if key == "_system" else business
            )
            assert names <= allowed, f"{key}.{lang}: unknown placeholders {names - allowed}"
            assert not re.search(r"<[a-z/]", text), f"{key}.{lang}: looks like HTML"
