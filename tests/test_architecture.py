"""The architecture, enforced: only nlu/runtime imports rasa, and every import follows the
layers (bot/tools/layers.py)."""

from __future__ import annotations

import ast

from bot.core.settings import PROJECT_ROOT
from bot.tools import layers

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


# -- layers (bot/tools/layers.py holds the table and the rules) --------------------------------


def test_every_module_has_a_layer() -> None:
    found = layers.modules()
    assert len(found) > 100
    unplaced = [m for m in found if layers.layer_of(m) is None and not m.startswith("nlu.runtime")]
    assert not unplaced


def test_imports_follow_the_layers_without_cycles() -> None:
    found = layers.modules()
    edges = layers.imports(found)
    assert len(edges) > 200  # the reader sees the imports (inside functions too)
    problems = layers.violations(found, edges)
    assert not problems, "imports against the layer rules:\n" + "\n".join(problems)


def test_a_wrong_import_is_caught() -> None:
    """Each rule, broken once on top of the real graph."""
    found = layers.modules()
    edges = layers.imports(found)
    wrong = {
        "bot.core.settings": "bot.conversation.engine",  # up the layers
        "handoff.desk": "surveys.store",  # siblings
        "surveys.flow": "bot.conversation.engine",  # past the ports
        "handoff.web.api": "bot.app",  # the top
        "bot.cli": "bot.app",  # the top, even for the command line
        "nlu.runtime.service": "nlu.client",  # the runtime stands apart
    }
    for source, target in wrong.items():
        problems = layers.violations(found, [*edges, layers.Import(source, target, 1)])
        assert len(problems) >= 1 and all(source in p for p in problems), (source, problems)


def test_a_cycle_is_caught() -> None:
    found = layers.modules()
    edges = [
        *layers.imports(found),
        layers.Import("bot.conversation.content", "bot.conversation.worker", 1),
    ]
    problems = layers.violations(found, edges)
    assert any(p.startswith("import cycle:") and "bot.conversation.worker" in p for p in problems)


def test_relative_imports_are_resolved(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pkg = tmp_path / "bot" / "core"
    pkg.mkdir(parents=True)
    (tmp_path / "bot" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def f():\n    from bot.app import y\n")
    (tmp_path / "bot" / "app.py").write_text("")
    found = layers.modules(tmp_path)
    got = {(e.source, e.target) for e in layers.imports(found)}
    assert got == {
        ("bot.core", "bot.core.a"),
        ("bot.core.a", "bot.core.b"),
        ("bot.core.b", "bot.app"),
    }
