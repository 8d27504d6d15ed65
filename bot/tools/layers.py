"""careline's layers, read from the code: which module is in which layer, and how many
imports go from each layer to each other one.

    .venv/bin/python -m bot.tools.layers          # the picture
    .venv/bin/python -m bot.tools.layers --check  # exit 1 on any import against the rules

The rules (tests/test_architecture.py runs the check on every `make test`):
1. a module imports only modules of its own layer or of layers below it;
2. `handoff` and `surveys` sit side by side in one layer and never import each other;
3. of the conversation core, they (their web adapters too) see only `bot.conversation.ports`;
4. nothing imports `bot.app`: it is the top (the `careline` command), handing its factory
   to the command line;
5. no import cycles between modules, counting imports inside functions and under
   TYPE_CHECKING (a cycle hidden there is still a cycle in the design).

`nlu.runtime` is the NLU service's own runtime (Python 3.10, Rasa): it stands apart and may
import only itself and the shared layer.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "nlu", "handoff", "surveys")


@dataclass(frozen=True)
class Layer:
    name: str
    about: str
    prefixes: tuple[str, ...]  # module names, each with everything under it


# Lowest first. A module belongs to the layer with its longest matching prefix.
LAYERS: tuple[Layer, ...] = (
    Layer(
        "shared",
        "code both runtimes share: Vietnamese text, YAML, the batch protocol, datasets, scores",
        ("nlu.vi", "nlu.batching", "nlu.datasets", "nlu.scores", "nlu.files"),
    ),
    Layer(
        "ground",
        "settings, SQL store, Redis helpers and key names, vocabulary, metrics",
        ("bot.core",),
    ),
    Layer(
        "services",
        "understanding text (NLU client, triage) and knowing who is who (accounts)",
        ("nlu", "bot.auth"),
    ),
    Layer("conversation", "the conversation core and its ports", ("bot.conversation",)),
    Layer("desks", "the help desk and the surveys, side by side", ("handoff", "surveys")),
    Layer(
        "adapters",
        "channels and web routes",
        ("bot.channels", "handoff.web", "surveys.web", "bot.auth.web"),
    ),
    Layer(
        "wiring",
        "the application, its startup and the command line",
        ("bot", "bot.app", "bot.startup", "bot.cli", "bot.auth.cli", "bot.tools"),
    ),
)
APART = "nlu.runtime"  # the Rasa runtime: its own process and Python
SIBLINGS = ("handoff", "surveys")  # in one layer, never importing each other
CORE_PORTS = "bot.conversation.ports"  # all the desks may see of the conversation core
TOP = "bot.app"  # the composition root: imported by nothing


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int | None:
    """The index in LAYERS of a careline module (None: apart, or not ours)."""
    if _under(module, APART):
        return None
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for i, layer in enumerate(LAYERS):
        for prefix in layer.prefixes:
            if _under(module, prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), i)
    return best[1] if best else None


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every careline module (migrations excepted: Alembic loads them by path)."""
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            if "migrations" in rel.parts:
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            found[".".join(parts)] = path
    return found


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """(dotted name, line) of every import, anywhere in the file."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                up = here[: len(here) - node.level + 1] if node.level > 1 else here
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int


def imports(found: dict[str, Path]) -> list[Import]:
    """Imports between careline modules, each resolved to the module it names."""
    out: list[Import] = []
    for module, path in found.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        seen: set[str] = set()
        for name, line in _imported_names(tree, module, path.name == "__init__.py"):
            target = name
            while target and target not in found:
                target = target.rpartition(".")[0]
            if target and target != module and target not in seen:
                seen.add(target)
                out.append(Import(module, target, line))
    return out


def violations(found: dict[str, Path], edges: Iterable[Import]) -> list[str]:
    edges = list(edges)
    problems: list[str] = []
    for e in edges:
        where = f"{e.source} (line {e.line}) imports {e.target}"
        src, dst = layer_of(e.source), layer_of(e.target)
        if _under(e.source, APART) or _under(e.target, APART):
            if _under(e.source, APART) and not (_under(e.target, APART) or dst == 0):
                problems.append(
                    f"{where}: the NLU runtime may import only itself and the shared layer"
                )
            elif not _under(e.source, APART):
                problems.append(f"{where}: only the NLU runtime imports the NLU runtime")
            continue
        if src is None or dst is None:
            continue
        if dst > src:
            problems.append(
                f"{where}: layer '{LAYERS[src].name}' may not import from the higher layer "
                f"'{LAYERS[dst].name}'"
            )
        top_src, top_dst = e.source.split(".")[0], e.target.split(".")[0]
        if top_src in SIBLINGS and top_dst in SIBLINGS and top_src != top_dst:
            problems.append(f"{where}: {top_src} and {top_dst} are siblings")
        if (
            top_src in SIBLINGS  # their web adapters too
            and LAYERS[dst].name == "conversation"
            and e.target != CORE_PORTS
        ):
            problems.append(f"{where}: the desks see the core only through {CORE_PORTS}")
        if e.target == TOP:
            problems.append(f"{where}: nothing imports {TOP} (it is the top)")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(found, edges)]
    return problems


def cycles(found: dict[str, Path], edges: Iterable[Import]) -> list[list[str]]:
    """Each group of modules that import each other in a circle (Tarjan's SCC)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        graph[e.source].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(found) + 100))
    for v in sorted(found):
        if v not in index:
            visit(v)
    return groups


def picture(found: dict[str, Path], edges: Iterable[Import]) -> str:
    """Each layer, highest first, with its modules and where its imports go."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for e in edges:
        src, dst = layer_of(e.source), layer_of(e.target)
        name = lambda i, m: LAYERS[i].name if i is not None else APART  # noqa: E731
        counts[(name(src, e.source), name(dst, e.target))] += 1
    by_layer: dict[str, list[str]] = defaultdict(list)
    for m in found:
        i = layer_of(m)
        by_layer[LAYERS[i].name if i is not None else APART].append(m)
    lines: list[str] = []
    for i in reversed(range(len(LAYERS))):
        layer = LAYERS[i]
        mods = by_layer[layer.name]
        lines.append(f"{i + 1}. {layer.name} — {layer.about} ({len(mods)} modules)")
        lines.append("   " + ", ".join(sorted(mods)))
        out = [
            f"{LAYERS[j].name} {counts[(layer.name, LAYERS[j].name)]}"
            for j in reversed(range(len(LAYERS)))
            if counts[(layer.name, LAYERS[j].name)]
        ]
        lines.append("   imports → " + (", ".join(out) if out else "nothing"))
        if i:
            lines.append("   ↓")
    apart = by_layer[APART]
    lines.append(f"\napart: {APART} — the NLU service's Rasa runtime ({len(apart)} modules)")
    lines.append(
        "   imports → "
        + ", ".join(f"{dst} {n}" for (src, dst), n in sorted(counts.items()) if src == APART)
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 on any import against the rules")
    args = p.parse_args(argv)
    found = modules()
    edges = imports(found)
    print(picture(found, edges))
    problems = violations(found, edges)
    print(f"\n{len(edges)} imports between {len(found)} modules; {len(problems)} against the rules")
    for problem in problems:
        print(f"  {problem}")
    return 1 if problems and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
