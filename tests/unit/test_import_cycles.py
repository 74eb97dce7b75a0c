"""The packages of ``cosim.models`` depend on each other without a cycle (imports inside functions too).

Every module counts, each package's ``component.py`` included: a component reaches the components built
before it through the world's ``built`` mapping, not by importing their packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

MODELS = Path(__file__).resolve().parents[2] / "models"
PREFIX = "cosim.models"


def _imported_modules(path: Path, root: Path) -> set[str]:
    """Absolute names of every module ``path`` (under ``root``, the ``cosim.models`` directory) imports,
    anywhere in it (relative imports resolved)."""
    parts = [PREFIX, *path.relative_to(root).with_suffix("").parts]
    package = parts[:-1]  # __init__.py: its package; a module: the package it sits in
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return out


def package_graph(root: Path = MODELS) -> dict[str, set[str]]:
    """Which ``cosim.models`` package (or top-level module) imports which other ones, from every module."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("").parts
        if rel == ("__init__",):
            continue
        source = rel[0]
        targets = graph.setdefault(source, set())
        for name in _imported_modules(path, root):
            bits = name.split(".")
            if bits[:2] == PREFIX.split(".") and len(bits) > 2 and bits[2] != source:
                targets.add(bits[2])
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path ``[a, b, ..., a]``, or None when it is acyclic."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_models_packages_are_acyclic() -> None:
    """No cosim.models package imports, directly or through others, a package that imports it."""
    cycle = find_cycle(package_graph())
    assert cycle is None, "import cycle between cosim.models packages: " + " -> ".join(cycle or [])


def test_graph_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The scan finds imports inside functions and relative ones, and the cycle they make."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "__init__.py").write_text("")
    (tmp_path / "a" / "x.py").write_text("def f():\n    from cosim.models.b.y import g\n")
    (tmp_path / "b" / "y.py").write_text("from .z import h\nfrom cosim.models import a\n")
    (tmp_path / "b" / "z.py").write_text("import numpy\n")
    graph = package_graph(tmp_path)
    assert graph == {"a": {"b"}, "b": {"a"}}
    assert find_cycle(graph) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_real_graph_has_the_known_dependencies() -> None:
    """The scan of the repository sees the accounting's use of the market and of the grid's power flow."""
    graph = package_graph()
    assert {"market", "grid"} <= graph["accounting"]
    assert "accounting" not in graph["market"]
    assert "agents" not in graph["grid"] and "market" in graph["agents"]  # agents bid into the market
