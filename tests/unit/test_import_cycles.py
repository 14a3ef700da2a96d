"""Modules import downward only: no cycle among the top-level imports of a package.

The imports are read with `ast`, not executed: those at module level (also inside a top-level
`if`, `try` or `with`), but not those under `if TYPE_CHECKING:` nor inside functions, which
run later by design. `from package import name` counts as importing the submodule when `name`
is one, else the package itself; importing a submodule does not count as importing its parent
packages (they are initialised first, but that is what package `__init__`s are for).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = [
    pytest.param(REPO / "sdk" / "plait", "plait", id="sdk"),
    pytest.param(REPO / "engine" / "plait_engine", "plait_engine", id="engine"),
]


def _modules(root: Path, package: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _top_level(node.body)
            yield from _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _top_level(block)
            for handler in node.handlers:
                yield from _top_level(handler.body)
        elif isinstance(node, ast.With):
            yield from _top_level(node.body)


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The module `name` names, or its closest enclosing package that is one of ours."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        here = module.split(".") if is_package else module.split(".")[:-1]
        anchor = here[: len(here) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _top_level(ast.parse(path.read_text(), str(path)).body):
            targets = _targets(node, module, is_package)
            if isinstance(node, ast.ImportFrom):
                # `from a import b`: the submodule a.b when it is one, else the module a.
                names, base = targets[:-1], targets[-1]
                targets = [n if n in modules else base for n in names]
            edges |= {t for t in (_known(t, modules) for t in targets) if t and t != module}
        graph[module] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return [*path[path.index(n) :], n]
            if n not in state and (found := visit(n)) is not None:
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)) is not None:
            return found
    return None


@pytest.mark.parametrize(("root", "package"), PACKAGES)
def test_no_import_cycles(root: Path, package: str) -> None:
    modules = _modules(root, package)
    assert len(modules) > 5
    graph = _graph(modules)
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_walker_sees_cycles_and_respects_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg import a\n")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
        "def f():\n    from pkg import a\n"
    )
    modules = _modules(pkg, "pkg")
    assert _cycle(_graph(modules)) is None
    (pkg / "sub" / "b.py").write_text("try:\n    from .. import a\nexcept ImportError:\n    pass\n")
    assert _cycle(_graph(modules)) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    (pkg / "sub" / "b.py").write_text("import pkg\n")  # the package itself: its __init__ runs a
    assert _cycle(_graph(modules)) == ["pkg", "pkg.a", "pkg.sub.b", "pkg"]
