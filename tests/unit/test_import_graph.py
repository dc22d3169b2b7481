"""No import circles anywhere in the ``layerfs`` distribution.

The graph is built from the source with ``ast``, not by importing: every
``import`` and ``from ... import`` counts, at module level, inside
functions and under ``if TYPE_CHECKING`` alike, because an import moved
into a function or behind a type-checking guard to dodge a circle is still
a circle in the design. Module names come from pyproject.toml's
``package-dir`` mapping, so ``drivers/`` is ``layerfs.drivers`` and
``benchmarks/`` is ``layerfs.benchmarks``, as installed.

An edge goes to the module an import names: ``from .pkg import x`` points
at ``pkg.x`` when that is a module, else at ``pkg``. Parent packages that
Python initialises on the way (``layerfs/__init__``) are not edges: every
submodule would otherwise close a circle with its package.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def package_dirs(root: Path) -> dict[str, Path]:
    """Top-level package name -> source directory, from pyproject.toml."""
    with open(root / "pyproject.toml", "rb") as f:
        setuptools = tomllib.load(f)["tool"]["setuptools"]
    return {name: root / d for name, d in setuptools["package-dir"].items()}


def source_modules(dirs: Mapping[str, Path]) -> dict[str, Path]:
    """Every module of the mapped packages: dotted name -> file (``__init__.py`` for a package)."""
    modules: dict[str, Path] = {}
    for name, base in dirs.items():
        # A directory mapped on its own (a nested package-dir entry) is named by that entry.
        nested = [d for d in dirs.values() if d != base and d.is_relative_to(base)]
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base)
            if any(path.is_relative_to(d) for d in nested):
                continue
            if not all(
                (base.joinpath(*rel.parts[:i]) / "__init__.py").exists()
                for i in range(len(rel.parts))
            ):
                continue  # not inside a package (scripts, data)
            parts = [name, *rel.with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str, modules: Mapping[str, Path]) -> str | None:
    """The deepest module of ``name`` (``a.b.c`` or, failing that, ``a.b``) that is ours."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ours it imports, anywhere in its source."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = _resolve(module, is_package, node)
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            for t in targets:
                hit = _known(t, modules)
                if hit is not None and hit != module:
                    graph[module].add(hit)
    return graph


def circular_groups(graph: Mapping[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module: each is a knot of circles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        # Tarjan's algorithm; the graph is a few hundred modules, recursion is fine.
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
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One circle per knot (see ``circular_groups``), as a path back to where it starts."""
    return [_circle_in(graph, comp) for comp in circular_groups(graph)]


def _circle_in(graph: Mapping[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest circle through the first module of ``comp`` (breadth-first)."""
    start = min(comp)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & comp):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    raise AssertionError(f"no circle through {start} in {sorted(comp)}")


def test_no_import_circles() -> None:
    graph = import_graph(source_modules(package_dirs(ROOT)))
    # The graph is the installed one: drivers and bench included, edges found.
    assert {"layerfs.drivers.overlay.driver", "layerfs.benchmarks.targets"} <= set(graph)
    assert "layerfs._layers" in graph["layerfs._store"]
    assert "layerfs.driver" in graph["layerfs.drivers.copy.driver"]
    found = [
        f"{' -> '.join(_circle_in(graph, group))}  (knot: {', '.join(sorted(group))})"
        for group in circular_groups(graph)
    ]
    assert not found, "import circles:\n" + "\n".join(found)


# -- the checker itself ------------------------------------------------------------


def _write(base: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text)


def test_graph_follows_the_package_dir_mapping(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pyproject.toml": '[tool.setuptools.package-dir]\n"pkg" = "pkg"\n"pkg.plugins" = "plugins"\n',
            "pkg/__init__.py": "",
            "pkg/core.py": "from .plugins import one\n",
            "plugins/__init__.py": "",
            "plugins/one.py": "from pkg import core\n",
            "plugins/tool.py": "",
        },
    )
    modules = source_modules(package_dirs(tmp_path))
    assert set(modules) == {"pkg", "pkg.core", "pkg.plugins", "pkg.plugins.one", "pkg.plugins.tool"}
    assert cycles(import_graph(modules)) == [["pkg.core", "pkg.plugins.one", "pkg.core"]]


@pytest.mark.parametrize(
    "where",
    [
        "from . import b\n",
        "def f():\n    from .b import thing\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import thing\n",
        "import pkg.b\n",
        "from .sub import c as _c\n",
    ],
    ids=["module-level", "function-level", "type-checking", "absolute", "via-subpackage"],
)
def test_every_kind_of_import_closes_a_circle(tmp_path: Path, where: str) -> None:
    _write(
        tmp_path,
        {
            "pyproject.toml": '[tool.setuptools.package-dir]\n"pkg" = "pkg"\n',
            "pkg/__init__.py": "from .b import thing\n",
            "pkg/a.py": where,
            "pkg/b.py": "from .a import x\nthing = 1\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/c.py": "from ..b import thing\n",
        },
    )
    found = cycles(import_graph(source_modules(package_dirs(tmp_path))))
    assert len(found) == 1
    assert found[0][0] == "pkg.a" and found[0][-1] == "pkg.a"


def test_a_package_importing_its_submodules_is_no_circle(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pyproject.toml": '[tool.setuptools.package-dir]\n"pkg" = "pkg"\n',
            "pkg/__init__.py": "from .a import x\nfrom . import b\n",
            "pkg/a.py": "from . import b\nx = 1\n",
            "pkg/b.py": "from pkg import errors\nimport os\n",
            "pkg/errors.py": "",
        },
    )
    assert cycles(import_graph(source_modules(package_dirs(tmp_path)))) == []
