"""No module imports one that imports it back, however indirectly.

Every import counts: at the top, inside a function, or under
``TYPE_CHECKING`` (an annotation-only circle still ties two modules'
designs together). A circle is a strongly connected component of the
import graph of the source tree (``layerfs``, ``drivers``, ``benchmarks``).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: Source folder -> the package name it is installed as.
PACKAGES = {"layerfs": "layerfs", "drivers": "layerfs.drivers", "benchmarks": "layerfs.benchmarks"}
#: Circles known and being taken apart on their own; delete each once it is gone.
PENDING = [
    {"layerfs._mounting", "layerfs._types"},
    {"layerfs._layers", "layerfs._recovery", "layerfs._store"},
]


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join([package, *parts])] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The modules of the tree that ``name`` imports (a package's own ``__init__`` aside)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
            # "from pkg import sub" imports the submodule; "from mod import name", the module.
            targets = subs if len(subs) == len(node.names) else [base, *subs]
        else:
            continue
        found.update(t for t in targets if t in mods and t != name)
    return found


def _circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(component)
    return circles


def test_circle_finder_finds_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _circles(graph) == [{"a", "b", "c"}]


def test_no_import_circles() -> None:
    mods = _modules()
    assert "layerfs.drivers.fuse.copy_up" in mods  # the tree was found
    graph = {name: _imports(name, path, mods) for name, path in mods.items()}
    new = [c for c in _circles(graph) if not any(c <= known for known in PENDING)]
    assert new == []
