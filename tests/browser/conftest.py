"""The browser tests run against the real gateway (real Redis, SQLite, the real NLU)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support import backend_settings, running_gateway


@pytest.fixture(scope="session")
async def gateway_url(tmp_path_factory, nlu_url: str) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    async with (
        backend_settings("sqlite", tmp_path_factory.mktemp("browser")) as s,
        running_gateway(s, nlu_url) as g,
    ):
        yield g.url
