"""NLU fixtures: one real model trained on the project data, one real service serving it.

Both are session-scoped: training costs about a minute and a service load ~15 s, so every
NLU test shares them. The model is the same one `make run` serves (trained on data/nlu,
never on data/heldout), cached in models/ by fingerprint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.settings import Settings
from nlu.process import NLUServiceProcess
from nlu.training import ensure_project_model


@pytest.fixture(scope="session")
def nlu_model(settings: Settings) -> Path:
    return ensure_project_model(settings, quiet=True)


@pytest.fixture(scope="session")
async def nlu_service(settings: Settings, nlu_model: Path) -> AsyncIterator[NLUServiceProcess]:
    service = NLUServiceProcess(settings, nlu_model, port=0)
    await service.start(timeout=180)
    yield service
    await service.stop()


@pytest.fixture(scope="session")
def nlu_url(nlu_service: NLUServiceProcess) -> str:
    return nlu_service.url
