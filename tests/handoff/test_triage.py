"""Severity triage: hazards in both languages (with and without diacritics), idioms that are
not hazards, safety questions, money/unusable/anger cases, routing, the intent signal,
frustration, settings validation and the `careline triage` command."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from bot.core.settings import PROJECT_ROOT, Settings, SettingsError, TriageSettings, load_settings
from nlu.triage.lexicon import Lexicon, LexiconError
from nlu.triage.triage import SEVERITIES, Triage, TriageResult, max_severity, raise_severity
from nlu.vi.text import has_diacritics

CARELINE = str(Path(sys.executable).parent / "careline")
LABELLED = PROJECT_ROOT / "data" / "triage" / "labelled.jsonl"


@pytest.fixture(scope="module")
def triage(settings: Settings) -> Triage:
    return Triage.from_settings(settings)


# text, severity, queue
CASES = [
    # hazards: Vietnamese with diacritics
    ("Điện thoại đang sạc thì phát nổ", "critical", "safety"),
    ("máy bị phồng pin, màn hình bị hở", "critical", "safety"),
    ("Laptop bốc khói khi cắm sạc", "critical", "safety"),
    ("cục sạc có mùi khét", "critical", "safety"),
    ("bé nhà em nuốt viên pin cúc áo", "critical", "safety"),
    ("chạm vào vỏ máy bị giật điện", "critical", "safety"),
    ("ổ cắm tóe lửa khi cắm sạc", "critical", "safety"),
    ("cáp sạc bị chảy nhựa", "critical", "safety"),
    ("tôi bị bỏng tay vì máy quá nóng", "critical", "safety"),
    # hazards: no diacritics, chat abbreviations
    ("dt bi no khi dang sac", "critical", "safety"),
    ("pin bi phong r ad oi", "critical", "safety"),
    ("may boc khoi, lam sao bay gio", "critical", "safety"),
    ("sac du phong co mui khet", "critical", "safety"),
    ("ko hieu sao may boc chay", "critical", "safety"),
    # hazards: English
    ("my phone exploded while charging", "critical", "safety"),
    ("the battery is swollen and the screen is lifting", "critical", "safety"),
    ("there is a burning smell from the charger", "critical", "safety"),
    ("my son swallowed a button battery", "critical", "safety"),
    ("I got an electric shock from the laptop", "critical", "safety"),
    ("laptop battery is swollen, can it explode?", "critical", "safety"),
    # idioms and look-alikes that are NOT hazards
    ("deal này nổ quá shop ơi", "low", "general"),
    ("giá nổ thế này mua liền", "low", "general"),
    ("sale cháy hàng chưa shop", "low", "general"),
    ("chay hang chua ad", "low", "general"),
    ("this phone is fire, how much?", "low", "general"),
    ("fire deal on the S24?", "low", "general"),
    ("your prices are fire", "low", "general"),
    ("pin chai rồi, dùng 2 tiếng là hết", "normal", "technical"),
    ("nóng máy khi chơi game", "normal", "technical"),
    ("máy nổ tiếng rè ở loa", "normal", "technical"),
    ("màn hình bị giật lag", "normal", "technical"),
    ("máy nóng bỏng tay khi quay phim", "normal", "technical"),
    ("this app is burning through my battery", "normal", "technical"),
    ("pin không bị phồng nhưng hao pin nhanh", "normal", "technical"),
    ("no smoke or smell, it just gets warm", "normal", "technical"),
    ("laptop chay cham qua", "normal", "technical"),
    # safety questions: asked, not happening -> normal, still the safety queue
    ("sạc qua đêm có bị nổ không shop?", "normal", "safety"),
    ("sac du phong co bi chay no khong", "normal", "safety"),
    ("can the battery explode if I charge it overnight?", "normal", "safety"),
    ("nếu pin bị phồng thì có được bảo hành không", "normal", "safety"),
    # high: unusable, water, data, money, fraud, orders, anger
    ("máy không lên nguồn", "high", "technical"),
    ("dt ko len nguon luon", "high", "technical"),
    ("my phone won't turn on after the update", "high", "technical"),
    ("điện thoại rơi vào nước", "high", "technical"),
    ("mất hết dữ liệu sau khi sửa", "high", "technical"),
    ("tôi bị trừ tiền 2 lần", "high", "billing"),
    ("you charged my card twice", "high", "billing"),
    ("shop lừa đảo", "high", "billing"),
    ("đặt hàng 3 tuần rồi chưa nhận được", "high", "orders"),
    ("giao nhầm màu rồi", "high", "orders"),
    ("tôi muốn gặp quản lý", "high", "general"),
    ("gap quan ly ngay", "high", "general"),
    ("sẽ bóc phốt shop lên facebook", "high", "general"),
    ("I want to speak to a manager", "high", "general"),
    # normal faults, returns, failed payments
    ("cảm ứng bị loạn", "normal", "technical"),
    ("camera bị mờ", "normal", "technical"),
    ("wifi keeps disconnecting", "normal", "technical"),
    ("tôi muốn đổi trả máy", "normal", "orders"),
    ("payment failed at checkout", "normal", "billing"),
    # low: questions and small talk
    ("iphone 15 giá bao nhiêu", "low", "general"),
    ("cửa hàng mở cửa mấy giờ", "low", "general"),
    ("có trả góp không", "low", "billing"),
    ("đơn hàng của em đến đâu rồi", "low", "orders"),
    ("bao hanh bao lau vay shop", "low", "technical"),
    ("hello", "low", "general"),
    ("where is my order?", "low", "orders"),
]


@pytest.mark.parametrize(("text", "severity", "queue"), CASES)
def test_cases(triage: Triage, text: str, severity: str, queue: str) -> None:
    r = triage.classify(text)
    assert (r.severity, r.queue) == (severity, queue), r.reasons


def test_cases_cover_both_languages_and_bare_vietnamese() -> None:
    texts = [t for t, _, _ in CASES]
    assert sum(has_diacritics(t) for t in texts) >= 20
    assert sum(not has_diacritics(t) and " " in t and t.isascii() for t in texts) >= 20
    assert {s for _, s, _ in CASES} == set(SEVERITIES)


def test_bare_spellings_that_are_other_words(triage: Triage) -> None:
    """Without diacritics "phong" is also "phòng", "bong" also "bong/bóng", "no" also "nó"."""
    for text in (
        "sac du phong co bi hu khong",
        "man hinh bi bong keo",
        "xem bong da tren dt",
        "dt no bi lag",
        "bông tai bluetooth",
        "my screen is on fire with this promo",
    ):
        assert triage.classify(text).severity != "critical", text
    assert triage.classify("dt no bi chay roi").severity == "critical"  # "nó" (it), not "no"


def test_decomposed_unicode_is_read_like_composed(triage: Triage) -> None:
    nfd = unicodedata.normalize("NFD", "máy bị phồng pin")
    assert triage.classify(nfd).severity == "critical"


def test_reasons_are_human_readable(triage: Triage) -> None:
    r = triage.classify("máy bị phồng pin")
    assert r.reasons[0] == "hazard term 'bị phồng pin' (swollen battery)"
    idiom = triage.classify("cháy hàng chưa shop")
    assert idiom.reasons == ("not a hazard: 'cháy hàng' (sold out)",)
    question = triage.classify("có bị nổ không shop?")
    assert question.reasons[0].startswith("safety question, no incident reported: 'có bị nổ không'")
    negated = triage.classify("máy không có mùi khét")
    assert any(x.startswith("negated, not a hazard: 'không có mùi khét'") for x in negated.reasons)
    for text, severity, _ in CASES:
        result = triage.classify(text)
        if severity != "low":
            assert result.reasons, text
        for reason in result.reasons:
            assert isinstance(reason, str) and reason.strip()
            assert not any(junk in reason for junk in ("Hit(", "Token(", "<", "None"))


def test_result_as_dict(triage: Triage) -> None:
    r = triage.classify("máy bị nổ", intent="hazard_explosion", confidence=0.97)
    assert isinstance(r, TriageResult)
    d = r.as_dict()
    assert d == {
        "severity": "critical",
        "queue": "safety",
        "reasons": list(r.reasons),
        "intent": "hazard_explosion",
        "confidence": 0.97,
        "ask": False,
    }
    assert "intent hazard_explosion (0.97)" in d["reasons"]
    json.dumps(d)


# -- the intent signal ---------------------------------------------------------------------


def test_hazard_intent_alone_makes_it_critical(triage: Triage) -> None:
    r = triage.classify("ờ thì", intent="hazard_fire_smoke", confidence=0.93)
    assert (r.severity, r.queue) == ("critical", "safety")
    assert r.reasons == ("intent hazard_fire_smoke (0.93)",)


def test_weak_hazard_intent_is_ignored(triage: Triage) -> None:
    assert triage.classify("ok", intent="hazard_explosion", confidence=0.3).severity == "low"


def test_lexicon_hazard_wins_over_a_non_hazard_intent(triage: Triage) -> None:
    r = triage.classify("pin phồng rồi shop", intent="greet", confidence=0.99)
    assert (r.severity, r.queue) == ("critical", "safety")
    r = triage.classify("smoke is coming out", intent="fault_overheating", confidence=0.9)
    assert r.severity == "critical"


def test_idiom_needs_a_very_sure_hazard_intent(triage: Triage) -> None:
    unsure = triage.classify("deal này nổ quá", intent="hazard_explosion", confidence=0.8)
    assert unsure.severity == "low"
    assert any("not trusted" in x for x in unsure.reasons)
    sure = triage.classify("deal này nổ quá", intent="hazard_explosion", confidence=0.95)
    assert sure.severity == "critical"


def test_non_hazard_intent_sets_severity_and_queue(triage: Triage) -> None:
    r = triage.classify("hmm", intent="fault_wont_turn_on", confidence=0.9)
    assert (r.severity, r.queue) == ("high", "technical")
    r = triage.classify("hmm", intent="order_status", confidence=0.9)
    assert (r.severity, r.queue) == ("low", "orders")
    r = triage.classify("hmm", intent="order_status", confidence=0.2)
    assert (r.severity, r.queue) == ("low", "general")


# -- frustration, misses, history ------------------------------------------------------------


def test_misses_raise_severity(triage: Triage) -> None:
    assert triage.classify("ok vậy", misses=1).severity == "low"
    r = triage.classify("ok vậy", misses=2)
    assert r.severity == "normal"
    assert "2 unanswered messages in a row" in r.reasons


def test_shouting_raises_severity_but_never_to_critical(triage: Triage) -> None:
    assert triage.classify("camera bị mờ").severity == "normal"
    r = triage.classify("CAMERA BỊ MỜ QUÁ TRỜI LUÔN")
    assert r.severity == "high" and "message in ALL CAPS" in r.reasons
    r = triage.classify("alo có ai không!!!", misses=5)
    assert r.severity == "high"
    assert "3 exclamation marks" in r.reasons and "5 unanswered messages in a row" in r.reasons


def test_anger_is_high(triage: Triage) -> None:
    for text in ("sẽ báo công an", "đăng lên facebook bóc phốt", "I will go to the press"):
        assert triage.classify(text).severity == "high", text


def test_repeated_message_and_history_topic(triage: Triage) -> None:
    r = triage.classify("alo shop", history=["alo shop"])
    assert r.severity == "normal" and "customer repeated the same message" in r.reasons
    r = triage.classify("vậy giờ sao", history=["tôi bị trừ tiền 2 lần"])
    assert r.queue == "billing"


def test_max_and_raise_severity() -> None:
    assert max_severity("low", "critical") == "critical"
    assert max_severity("high", "normal") == "high"
    assert max_severity("normal", "normal") == "normal"
    assert raise_severity("low", 1, "high") == "normal"
    assert raise_severity("normal", 5, "high") == "high"
    assert raise_severity("critical", 1, "high") == "critical"
    with pytest.raises(ValueError, match="unknown severity"):
        max_severity("urgent", "low")


def test_classify_is_fast_and_deterministic(triage: Triage) -> None:
    texts = [json.loads(line)["text"] for line in LABELLED.read_text(encoding="utf-8").splitlines()]
    start = time.perf_counter()
    first = [triage.classify(t) for t in texts]
    assert time.perf_counter() - start < 3.0
    assert first == [triage.classify(t) for t in texts]


# -- settings and lexicon validation ----------------------------------------------------------


def test_settings_defaults_match_config(settings: Settings) -> None:
    assert settings.triage == TriageSettings()
    assert settings.triage.queues == ["safety", "technical", "billing", "orders", "general"]


def test_unknown_queue_is_rejected() -> None:
    with pytest.raises(ValidationError, match=r"intent_queue\.fault_camera -> 'tech'"):
        TriageSettings(intent_queue={"fault_camera": "tech"})
    with pytest.raises(ValidationError, match="default_queue -> 'misc'"):
        TriageSettings(default_queue="misc")


def test_unknown_queue_in_config_yml_names_the_key(tmp_path: Path) -> None:
    raw = yaml.safe_load((PROJECT_ROOT / "config.yml").read_text(encoding="utf-8"))
    raw["careline"]["triage"]["intent_queue"]["fault_camera"] = "camera-team"
    cfg = tmp_path / "config.yml"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings(cfg, env={})
    assert "careline.triage" in str(info.value) and "'camera-team'" in str(info.value)


def test_lexicon_errors_name_the_file_and_entry(tmp_path: Path, settings: Settings) -> None:
    bad = tmp_path / "lexicon.yml"
    bad.write_text("version: 1\nhazards:\n  fire:\n    label: fire\n    patterns: ['… cháy']\n")
    with pytest.raises(LexiconError, match=r"lexicon\.yml: pattern '… cháy' must not start"):
        Lexicon.load(bad)
    with pytest.raises(LexiconError, match="not found"):
        Lexicon.load(tmp_path / "missing.yml")
    queue = tmp_path / "queue.yml"
    queue.write_text(
        "version: 1\nhazards: {fire: {label: fire, patterns: [cháy]}}\ntopics: {repairs: [sửa]}\n"
    )
    with pytest.raises(LexiconError, match=r"\['repairs'\] are not in careline\.triage\.queues"):
        Triage(Lexicon.load(queue), settings.triage)


# -- the labelled set -------------------------------------------------------------------------


def test_labelled_set_shape(settings: Settings) -> None:
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 300
    by_severity = {s: [r for r in rows if r["severity"] == s] for s in SEVERITIES}
    assert len(by_severity["critical"]) >= 60
    for level, items in by_severity.items():
        tests = sum(r["split"] == "test" for r in items)
        assert abs(tests - len(items) / 2) <= 1, level  # stratified halves
    assert sum((r.get("note") or "").startswith("hard negative") for r in rows) >= 40
    assert {r["lang"] for r in rows} == {"vi", "en"}
    assert sum(r["lang"] == "vi" and not has_diacritics(r["text"]) for r in rows) >= 50
    assert {r["queue"] for r in rows} <= set(settings.triage.queues)
    assert len({r["text"] for r in rows}) == len(rows)


# -- the command ------------------------------------------------------------------------------


def _careline(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CARELINE, *args], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def test_cli_eval_meets_the_critical_targets_on_test() -> None:
    out = _careline("triage", "--eval", str(LABELLED), "--split", "test", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    critical = report["levels"]["critical"]
    assert report["split"] == "test" and report["n"] >= 150
    assert critical["recall"] >= 0.98, report["missed_critical"]
    assert critical["precision"] >= 0.85, report["false_critical"]
    matrix = report["confusion"]["rows_gold_columns_predicted"]
    assert report["confusion"]["order"] == list(SEVERITIES)
    assert sum(map(sum, matrix)) == report["n"]


def test_cli_eval_text_report() -> None:
    out = _careline("triage", "--eval", str(LABELLED), "--split", "dev")
    assert out.returncode == 0, out.stderr
    for needle in ("precision", "recall", "confusion (rows gold, columns predicted)",
                   "queue accuracy", "missed critical", "critical recall"):  # fmt: skip
        assert needle in out.stdout
    line = next(x for x in out.stdout.splitlines() if x.startswith("critical recall"))
    recall, precision = (float(x) for x in line.split()[2::3])
    assert recall >= 0.98 and precision >= 0.85


def test_cli_text_prints_one_json_per_line() -> None:
    out = _careline("triage", "máy bị phồng pin", "cháy hàng chưa shop")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [x["severity"] for x in lines] == ["critical", "low"]
    assert lines[0]["queue"] == "safety" and lines[0]["text"] == "máy bị phồng pin"


def test_cli_jsonl_streams_and_reports_a_malformed_line(tmp_path: Path) -> None:
    good = tmp_path / "in.jsonl"
    good.write_text('{"text": "may bi no"}\n\n{"text": "ok", "misses": 3}\n', encoding="utf-8")
    out = _careline("triage", "--jsonl", str(good))
    assert out.returncode == 0, out.stderr
    results = [json.loads(x) for x in out.stdout.splitlines()]
    assert [r["severity"] for r in results] == ["critical", "normal"]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "pin phồng"}\n{"text": oops}\n{"text": "ok"}\n', encoding="utf-8")
    out = _careline("triage", "--jsonl", str(bad))
    assert out.returncode == 1
    assert f"{bad}:2: not valid JSON" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stdout.splitlines()) == 1  # the good line before it was already printed

    out = _careline("triage", "--jsonl", "-", stdin='{"txt": "x"}\n')
    assert out.returncode == 1 and '-:1: missing or non-string "text"' in out.stderr
