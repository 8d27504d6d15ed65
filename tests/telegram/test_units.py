"""The pure parts: splitting, secrets and settings validation, update shapes."""

from __future__ import annotations

import pytest

from bot.channels.telegram.content import language_of
from bot.channels.telegram.credentials import SECRET_ENV, TOKEN_ENV, TelegramCredentials
from bot.channels.telegram.split import split_text, utf16_len
from bot.core.settings import SettingsError, load_settings
from tests.telegram.fake_bot_api import TOKEN


def test_short_text_is_one_part_and_blank_is_none() -> None:
    assert split_text("  xin chào  ") == ["xin chào"]
    assert split_text(" \n ") == []


def test_exactly_the_limit_is_one_part_one_more_is_two() -> None:
    assert split_text("a" * 4096) == ["a" * 4096]
    assert split_text("a" * 4097) == ["a" * 4096, "a"]  # no break anywhere: hard cut


def test_cuts_prefer_paragraphs_then_lines_then_spaces() -> None:
    para = "x" * 3000
    assert split_text(f"{para}\n\n{para}") == [para, para]
    assert split_text(f"{para}\n{para}") == [para, para]
    words = ("từ " * 2000).strip()
    parts = split_text(words)
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in parts)
    assert " ".join(parts) == words and all(utf16_len(p) <= 4096 for p in parts)


def test_limit_counts_utf16_units_and_never_splits_an_emoji() -> None:
    text = "🔋" * 3000  # 6,000 UTF-16 units
    parts = split_text(text)
    assert [utf16_len(p) for p in parts] == [4096, 1904]
    assert "".join(parts) == text


def test_split_rejects_a_useless_limit() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        split_text("abc", limit=1)


def test_language_code_mapping() -> None:
    assert [language_of(c) for c in ("vi", "en-US", "EN", "fr", None, "")] == [
        "vi", "en", "en", None, None, None,
    ]  # fmt: skip


def _cfg(mode: str):  # type: ignore[no-untyped-def]
    s = load_settings()
    return s.telegram.model_copy(update={"mode": mode})


def test_credentials_need_a_token_and_in_webhook_mode_a_secret() -> None:
    with pytest.raises(SettingsError, match=TOKEN_ENV):
        TelegramCredentials.from_env({}, _cfg("polling"))
    with pytest.raises(SettingsError, match="does not look like a bot token"):
        TelegramCredentials.from_env({TOKEN_ENV: "not-a-token"}, _cfg("polling"))
    assert TelegramCredentials.from_env({TOKEN_ENV: TOKEN}, _cfg("polling")).secret is None
    with pytest.raises(SettingsError, match=f"{SECRET_ENV} is not set"):
        TelegramCredentials.from_env({TOKEN_ENV: TOKEN}, _cfg("webhook"))
    for bad in ("short", "has spaces in it 0123456789", "x" * 257):
        with pytest.raises(SettingsError, match="16-256 characters"):
            TelegramCredentials.from_env({TOKEN_ENV: TOKEN, SECRET_ENV: bad}, _cfg("webhook"))
    ok = TelegramCredentials.from_env({TOKEN_ENV: TOKEN, SECRET_ENV: "s" * 32}, _cfg("webhook"))
    assert ok.bot_id == TOKEN.split(":")[0]


def test_telegram_settings_are_validated_with_the_key_named() -> None:
    assert load_settings(env={"CARELINE__TELEGRAM__MODE": "off"}).telegram.mode == "off"
    with pytest.raises(SettingsError, match=r"careline\.telegram\.mode"):
        load_settings(env={"CARELINE__TELEGRAM__MODE": "carrier-pigeon"})
    with pytest.raises(SettingsError, match=r"careline\.telegram\.outbox\.retry_base_s"):
        load_settings(env={"CARELINE__TELEGRAM__OUTBOX__RETRY_BASE_S": "0"})
    with pytest.raises(SettingsError, match=r"careline\.telegram\.bot_token: unknown key"):
        load_settings(env={"CARELINE__TELEGRAM__BOT_TOKEN": "123:abc"})  # never in config
    with pytest.raises(SettingsError, match=r"careline\.telegram\.webhook_path"):
        load_settings(env={"CARELINE__TELEGRAM__WEBHOOK_PATH": "no-leading-slash"})
