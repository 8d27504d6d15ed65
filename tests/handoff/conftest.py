"""Fixtures for the help desk: a gateway whose people are always "open", and accounts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.core.settings import OpeningHours, Settings
from tests.support import BACKENDS, RunningGateway, backend_settings, running_gateway, with_section

PASSWORD = "correct horse battery"
ALWAYS_OPEN = OpeningHours(start="00:00", end="24:00")


def desk_settings(s: Settings, **handoff: Any) -> Settings:
    handoff.setdefault("opening_hours", ALWAYS_OPEN)  # (backend_settings already does this)
    return with_section(s, "handoff", **handoff)


@pytest.fixture(params=BACKENDS)
async def desk_gateway(request, tmp_path: Path, nlu_url: str) -> AsyncIterator[RunningGateway]:  # type: ignore[no-untyped-def]
    async with (
        backend_settings(request.param, tmp_path) as s,
        running_gateway(desk_settings(s), nlu_url) as g,
    ):
        yield g


async def add_account(g: RunningGateway, username: str, role: str = "agent", **kw: Any) -> str:
    kw.setdefault("queues", list(g.settings.triage.queues))
    account = await g.gw.desk.accounts.add(username, PASSWORD, role=role, **kw)
    return account.id
