"""The line between the two runtimes: only nlu/runtime imports rasa."""

from __future__ import annotations

import ast

from bot.core.settings import PROJECT_ROOT

GATEWAY_PACKAGES = ("bot", "nlu", "handoff", "surveys")


def _imports(path) -> set[str]:  # type: ignore[no-untyped-def]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_only_the_nlu_runtime_imports_rasa() -> None:
    offenders = []
    checked = 0
    for pkg in GATEWAY_PACKAGES:
        for f in (PROJECT_ROOT / pkg).rglob("*.py"):
            rel = f.relative_to(PROJECT_ROOT)
            if rel.parts[:2] == ("nlu", "runtime"):
                continue
            checked += 1
            if {"rasa", "tensorflow"} & _imports(f):
                offenders.append(str(rel))
    assert checked > 5
    assert not offenders, f"gateway-side modules importing rasa/tensorflow: {offenders}"


def test_runtime_code_does_not_import_gateway_only_packages() -> None:
    """nlu/runtime runs on Python 3.10 with pydantic 1: it must not reach into bot/ etc."""
    for f in (PROJECT_ROOT / "nlu" / "runtime").rglob("*.py"):
        bad = {"bot", "handoff", "surveys", "sqlmodel", "redis", "telegram"} & _imports(f)
        assert not bad, f"{f.relative_to(PROJECT_ROOT)} imports {bad}"
