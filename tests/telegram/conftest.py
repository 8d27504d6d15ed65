"""Fixtures: `tg` is a gateway with the Telegram channel (webhook mode) on real Redis and on
each SQL backend, with the fake Bot API behind python-telegram-bot's base_url."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import BACKENDS
from tests.telegram.harness import Harness, telegram_gateway


@pytest.fixture(params=BACKENDS)
async def tg(
    request: pytest.FixtureRequest, tmp_path: Path, nlu_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Harness]:
    async with telegram_gateway(request.param, tmp_path, nlu_url, monkeypatch) as h:
        yield h
