"""The Telegram secrets: read from the environment only, and checked before anything starts,
so a missing or mangled token is one clear line at startup, not a 401 loop later."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from bot.core.settings import SettingsError, TelegramSettings

TOKEN_ENV = "TELEGRAM_BOT_TOKEN"
SECRET_ENV = "TELEGRAM_WEBHOOK_SECRET"


@dataclass(frozen=True)
class TelegramCredentials:
    token: str
    secret: str | None  # required for webhooks only

    @property
    def bot_id(self) -> str:
        return self.token.split(":", 1)[0]

    @classmethod
    def from_env(cls, env: Mapping[str, str], cfg: TelegramSettings) -> TelegramCredentials:
        """Read and check the secrets; SettingsError names the variable and what is wrong."""
        token = env.get(TOKEN_ENV, "").strip()
        if not token:
            raise SettingsError(
                f"careline.telegram.mode is {cfg.mode!r} but {TOKEN_ENV} is not set "
                "(the bot token from @BotFather; set mode: off to run without Telegram)"
            )
        if not re.fullmatch(r"\d{1,20}:[A-Za-z0-9_-]{20,100}", token):
            raise SettingsError(f"{TOKEN_ENV} does not look like a bot token (<digits>:<secret>)")
        secret = env.get(SECRET_ENV, "").strip() or None
        if cfg.mode == "webhook":
            if secret is None:
                raise SettingsError(
                    f"careline.telegram.mode is 'webhook' but {SECRET_ENV} is not set (1-256 "
                    "characters A-Z a-z 0-9 _ -; Telegram sends it back with every update)"
                )
            if not re.fullmatch(r"[A-Za-z0-9_-]{16,256}", secret):
                raise SettingsError(
                    f"{SECRET_ENV} must be 16-256 characters of A-Z a-z 0-9 _ - "
                    "(Telegram's alphabet; at least 16 so it cannot be guessed)"
                )
        return cls(token, secret)
