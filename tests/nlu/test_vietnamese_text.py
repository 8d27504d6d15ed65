"""The Vietnamese chat normaliser (nlu/vi/normalize.py) on tricky strings.

Pure Python: runs in the gateway environment without Rasa. The Rasa tokenizer in
nlu/runtime/components/vietnamese.py calls exactly these functions, so pinning them here pins
what the intent model sees.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from nlu.vi.normalize import Lexicon, normalize_text, normalized_words
from nlu.vi.text import fold, language_votes, strip_diacritics

ROOT = Path(__file__).resolve().parents[2]
LEXICON_FILE = ROOT / "data" / "lexicon" / "abbreviations.yml"


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon.load(LEXICON_FILE)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # case
        ("SHOP ƠI", "shop ơi"),
        ("Máy Bị Nổ", "máy bị nổ"),
        # đ/Đ are letters of their own, lower-cased but never folded by normalisation
        ("ĐIỆN THOẠI Đà Nẵng", "điện thoại đà nẵng"),
        # decomposed (NFD) accents compose to the same string as precomposed ones
        (nfd("máy bị nổ"), "máy bị nổ"),
        (nfd("Điện Thoại BỊ HỎNG"), "điện thoại bị hỏng"),
        # abbreviations, whole words only
        ("sp nay con k", "sản phẩm nay con không"),
        ("dt ko mo dc", "điện thoại không mo được"),
        ("đt bị j vậy", "điện thoại bị gì vậy"),
        ("mn oi bn tien", "mọi người oi bao nhiêu tien"),
        ("doi tra ntn", "doi tra như thế nào"),
        ("giao r ma chua nhan", "giao rồi ma chua nhan"),
        ("mik lm sao z", "mình làm sao vậy"),
        ("oke", "ok"),
        ("Oke shop", "ok shop"),
        ("ok", "ok"),
        ("hok biết", "không biết"),
        ("khong dc", "không được"),
        ("t7 co lm ko", "thứ bảy co làm không"),
        # words that merely contain an abbreviation stay as typed
        ("kk", "kk"),
        ("kkk shop vui ghê", "kkk shop vui ghê"),
        ("okk", "okk"),
        ("ko, kk", "không, kk"),
        ("ship 20k", "ship 20k"),
        ("spam", "spam"),
        ("dtdd", "dtdd"),
        # punctuation attached to a word does not hide it, and is kept
        ("k?", "không?"),
        ("dc!!!", "được!!!"),
        ("(sp)", "(sản phẩm)"),
        ("ko,k", "không,không"),
        ('"ko"', '"không"'),
        # ...but words joined by . - / : @ are one token, never expanded
        ("v.v", "v.v"),
        ("k-pop", "k-pop"),
        ("8:30 t7", "8:30 thứ bảy"),
        ("mail: k@gmail.com", "mail: k@gmail.com"),
        # one-letter abbreviations: lower case only, and not after a number
        ("Galaxy Z Flip 6 về hàng chưa", "galaxy z flip 6 về hàng chưa"),
        ("sạc 500 k", "sạc 500 k"),
        ("giá 1.500 k hả", "giá 1.500 k hả"),
        ("K", "không"),  # a lone letter is an answer, whatever its case
        ("K.", "không."),
        # emoji are kept as they are and do not block expansion
        ("dt ko len 😢", "điện thoại không len 😢"),
        ("😡😡 sp lỗi", "😡😡 sản phẩm lỗi"),
        ("👍", "👍"),
        # spacing is preserved
        ("  ko   dc  ", "  không   được  "),
        ("", ""),
        ("??", "??"),
    ],
)
def test_normalize_text(lexicon: Lexicon, raw: str, expected: str) -> None:
    assert normalize_text(raw, lexicon) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("r u a robot", "are you a robot"),  # English: Vietnamese "r" stays off
        ("thank u", "thank you"),
        ("pls cancel my order", "please cancel my order"),
        ("is it ok", "is it ok"),
        ("r", "rồi"),  # no evidence either way: the Vietnamese reading
        ("ok v thoi, bye", "ok vậy thoi, bye"),
        ("pin sạc k vào", "pin sạc không vào"),  # diacritics: Vietnamese
        ("u là trời", "u là trời"),  # English table not used on Vietnamese text
    ],
)
def test_language_gate(lexicon: Lexicon, raw: str, expected: str) -> None:
    assert normalize_text(raw, lexicon) == expected


def test_mk_is_not_expanded_because_it_also_means_password(lexicon: Lexicon) -> None:
    assert normalize_text("quen mk", lexicon) == "quen mk"


def test_word_offsets_point_into_the_original_text(lexicon: Lexicon) -> None:
    raw = nfd("Máy bị nổ r, sp ĐỂ ĐÂU")
    words = normalized_words(raw, lexicon)
    assert [w.norm for w in words] == ["máy", "bị", "nổ", "rồi", "sản phẩm", "để", "đâu"]
    for w in words:  # the span is the typed word, in its typed (here NFD) form
        assert unicodedata.normalize("NFC", raw[w.start : w.end]) == w.surface
    assert words[0].surface == "Máy"
    assert words[-1].end == len(raw)


def test_word_offsets_with_emoji_and_punctuation(lexicon: Lexicon) -> None:
    raw = "😢 dt, ko lên!"
    words = normalized_words(raw, lexicon)
    assert [(raw[w.start : w.end], w.norm) for w in words] == [
        ("dt", "điện thoại"),
        ("ko", "không"),
        ("lên", "lên"),
    ]


def test_folded_forms_meet() -> None:
    typed = ["máy bị nổ", "may bi no", nfd("MÁY BỊ NỔ"), "Máy Bị Nổ"]
    assert {fold(t) for t in typed} == {"may bi no"}
    assert fold("ĐƯỢC đc") == "duoc dc"
    assert strip_diacritics("Đà Nẵng") == "Da Nang"  # existing helper unchanged


def test_normalized_then_folded_abbreviations_meet_full_words(lexicon: Lexicon) -> None:
    assert fold(normalize_text("dc ko", lexicon)) == fold("được không") == "duoc khong"


def test_language_votes() -> None:
    # "the" counts for both: it is also Vietnamese "thế" typed without accents
    assert language_votes(["shop", "oi", "the", "phone"]) == (3, 2)


def test_lexicon_round_trip(lexicon: Lexicon) -> None:
    assert Lexicon.from_dict(lexicon.to_dict()) == lexicon
    assert lexicon.vi["k"] == "không"
    assert lexicon.any["oke"] == "ok"


@pytest.mark.parametrize(
    "doc",
    [
        {"vi": {"không": ["k"], "khác": ["k"]}},  # one abbreviation, two expansions
        {"vi": {"không": ["k o"]}},  # not a single word
        {"vi": {"vậy": ["v.v"]}},  # a joined compound
        {"vi": ["k"]},  # not a mapping
        {"fr": {"oui": ["ui"]}},  # unknown section
    ],
)
def test_lexicon_rejects_malformed_tables(doc: dict) -> None:
    with pytest.raises(ValueError):
        Lexicon.from_mapping(doc)


def test_lexicon_file_expansions_are_not_abbreviations_themselves(lexicon: Lexicon) -> None:
    """No chains (a -> b -> c): expansion runs once, so a chain would be half-applied."""
    for table in (lexicon.any, lexicon.vi, lexicon.en):
        chained = {k: v for k, v in table.items() if v in table}
        assert not chained


# -- the trained model (shared session fixtures from tests/nlu/conftest.py) ------------------


@pytest.mark.nlu
def test_model_carries_its_own_abbreviation_table(nlu_model: Path, lexicon: Lexicon) -> None:
    """The table is stored in the model at training time: serving never reads data/lexicon."""
    import json
    import tarfile

    with tarfile.open(nlu_model) as tar:
        stored = [m for m in tar.getmembers() if m.name.endswith("/lexicon.json")]
        assert len(stored) == 1, [m.name for m in tar.getmembers()]
        handle = tar.extractfile(stored[0])
        assert handle is not None
        assert Lexicon.from_dict(json.load(handle)) == lexicon


@pytest.mark.nlu
async def test_parse_keeps_the_text_as_typed_and_accents_do_not_matter(nlu_url: str) -> None:
    import aiohttp

    typed = [nfd("MÁY BỊ NỔ RỒI"), "may bi no r", "máy bị nổ rồi"]
    async with aiohttp.ClientSession() as http:
        got = []
        for text in typed:
            async with http.post(nlu_url + "/model/parse", json={"text": text}) as r:
                assert r.status == 200, await r.text()
                data = await r.json()
            assert data["text"] == text  # normalisation never leaks into the output
            got.append(data["intent"]["name"])
    assert got == ["hazard_explosion"] * 3
