"""Shared fixtures and the suite's rules.

Rule: nothing is skipped silently. A skipped test fails the run unless it is marked
`@pytest.mark.optional` (and then its reason is printed in the summary by -ra).

Real parts: one Rasa model trained on the project data and one NLU service for the session;
a real Redis (each test gets its own key prefix) and both SQLite and PostgreSQL (each test
gets a fresh file or schema), so parallel runs never collide.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.core.settings import Settings, load_settings
from nlu.process import NLUServiceProcess
from nlu.training import ensure_project_model
from tests.support import (
    BACKENDS,
    REDIS_URL,
    RunningGateway,
    backend_settings,
    running_gateway,
)

_BAD_SKIPS = pytest.StashKey[list[str]]()
_CONFIG: list[pytest.Config] = []  # this process's config, for the report hook
OPTIONAL = "careline-optional"


def pytest_configure(config) -> None:  # type: ignore[no-untyped-def]
    config.stash[_BAD_SKIPS] = []
    _CONFIG[:] = [config]


# The files that take longest (about a minute each), run first: pytest-xdist's loadfile
# hands files to workers in collection order, so a long file collected last would leave one
# worker running it alone at the end.
LONGEST_FIRST = (
    "tests/nlu/test_batched_diet.py",
    "tests/nlu/test_benchmarks.py",
    "tests/handoff/test_triage.py",
    "tests/browser/test_console.py",
    "tests/gateway/test_safety_question.py",
    "tests/gateway/test_replicas.py",
)


def pytest_collection_modifyitems(config, items) -> None:  # type: ignore[no-untyped-def]
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def order(item: pytest.Item) -> int:
        path = Path(str(item.path)).relative_to(config.rootpath).as_posix()
        return rank.get(path, len(rank))

    items.sort(key=order)  # stable: the rest keep their order


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """Mark reports of tests marked optional (user properties travel to xdist's controller,
    where the item's markers are not at hand)."""
    outcome = yield
    if item.get_closest_marker("optional") is not None:
        outcome.get_result().user_properties.append((OPTIONAL, True))


def pytest_runtest_logreport(report) -> None:  # type: ignore[no-untyped-def]
    """Count every skip of a test not marked optional, as it is reported. This hook also
    runs in the controller of a parallel run (pytest-xdist replays the workers' reports
    there), so the controller, which decides the exit status, sees every skip; the status
    is decided in pytest_sessionfinish, which runs before the terminal summary."""
    expected = hasattr(report, "wasxfail") or (OPTIONAL, True) in report.user_properties
    if report.skipped and not expected and _CONFIG:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else ""
        _CONFIG[0].stash[_BAD_SKIPS].append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus) -> None:  # type: ignore[no-untyped-def]
    if session.config.stash.get(_BAD_SKIPS, []) and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    bad = config.stash.get(_BAD_SKIPS, [])
    if bad:
        terminalreporter.section("skipped tests that are not optional", red=True)
        for line in bad:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


# -- NLU: a real model and a real service -------------------------------------------------


@pytest.fixture(scope="session")
def nlu_model(settings: Settings) -> Path:
    """The model `make run` serves (trained on data/nlu, never on data/heldout)."""
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


# -- Redis and SQL --------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await client.ping()
    except Exception as e:
        pytest.fail(
            f"Redis is required at {REDIS_URL} but is unreachable: {e!r} "
            "(scripts/ensure-services.sh starts it when installed)",
            pytrace=False,
        )
    yield client
    await client.aclose()


@pytest.fixture(params=BACKENDS)
async def gateway(request, tmp_path: Path, nlu_url: str) -> AsyncIterator[RunningGateway]:  # type: ignore[no-untyped-def]
    async with (
        backend_settings(request.param, tmp_path) as s,
        running_gateway(s, nlu_url) as g,
    ):
        yield g
