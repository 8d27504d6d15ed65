"""Shared fixtures and the suite's rules.

Rule: nothing is skipped silently. A skipped test fails the run unless it is marked
`@pytest.mark.optional` (and then its reason is printed in the summary by -ra).
"""

from __future__ import annotations

import pytest

from bot.settings import Settings, load_settings


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    bad = [
        r
        for r in terminalreporter.stats.get("skipped", [])
        if "optional" not in getattr(r, "keywords", {})
    ]
    if bad:
        terminalreporter.section("skipped tests that are not optional", red=True)
        for r in bad:
            terminalreporter.write_line(f"{r.nodeid}: {r.longrepr[-1] if r.longrepr else ''}")
        config._careline_bad_skips = len(bad)


def pytest_sessionfinish(session, exitstatus) -> None:  # type: ignore[no-untyped-def]
    if getattr(session.config, "_careline_bad_skips", 0) and exitstatus == 0:
        session.exitstatus = 1


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()
