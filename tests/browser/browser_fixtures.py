"""A session-wide headless Chromium for the browser tests.

Uses the distribution's Chromium (Debian: `apt-get install chromium`), never a browser
downloaded by `playwright install`. A missing browser FAILS the run: it is not a reason to skip.
`CARELINE_CHROMIUM` overrides the path.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

CHROMIUM = os.environ.get("CARELINE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _require_chromium() -> None:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: the browser tests need it. "
            "Install it with `apt-get install chromium` (or set CARELINE_CHROMIUM); "
            "do not use `playwright install`.",
            pytrace=False,
        )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Any]:
    _require_chromium()
    try:
        from playwright.async_api import async_playwright
    except ImportError as e:  # pragma: no cover - the lock file pins playwright
        pytest.fail(f"the `playwright` package is missing from .venv ({e})", pytrace=False)
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()
