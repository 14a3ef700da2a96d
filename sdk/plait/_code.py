"""Code digests: what a task's version knows about its code.

A task's digest covers the function's syntax tree and, recursively, every module-level
definition it names (helpers, constants, classes, imports). Comments, blank lines, formatting
and the order of definitions in the file do not count; any change to the code does. The tree
is dumped by hand (node types and non-empty fields, no positions), so the digest is the same
on every machine and across Python patch releases, unlike bytecode.
"""

from __future__ import annotations

import ast
import copy
import linecache
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

_Def = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class _Module:
    tree: ast.Module
    # Module-level name -> the statements that bind it, in file order.
    defs: dict[str, list[ast.stmt]]


_lock = threading.Lock()
_modules: dict[tuple[str, str], _Module | None] = {}


def code_digest(fn: Callable[..., Any]) -> str:
    """A digest of `fn`'s code and of what it uses from its module.

    Returns:
        16 hex digits, or ``""`` when the source is not available (a function built at run
        time, or a file that is gone).
    """
    code = getattr(fn, "__code__", None)
    if code is None:
        return ""
    module = _module(code.co_filename, getattr(fn, "__globals__", None))
    if module is None:
        return ""
    node = _find(module.tree, fn.__name__, code.co_firstlineno)
    if node is None:
        return ""
    root = _without_decorators(node)
    parts = [_dump(root)]
    for stmt in _dependencies(root, module, {fn.__name__}):
        parts.append(_dump(stmt))
    # The function first, then its dependencies in a fixed order whatever their place in the file.
    text = parts[0] + "\n" + "\n".join(sorted(set(parts[1:])))
    return _sha256(text)[:16]


def _sha256(text: str) -> str:
    import hashlib  # when a task is versioned: `import plait` need not load OpenSSL

    return hashlib.sha256(text.encode()).hexdigest()


def _module(filename: str, module_globals: dict[str, Any] | None) -> _Module | None:
    lines = linecache.getlines(filename, module_globals)
    if not lines:
        return None
    # Line endings differ between checkouts (CRLF on Windows): not a change of the code.
    source = "".join(lines).replace("\r\n", "\n").replace("\r", "\n")
    key = (filename, _sha256(source))
    with _lock:
        if key in _modules:
            return _modules[key]
    try:
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError):
        found = None
    else:
        found = _Module(tree, _top_level(tree.body))
    with _lock:
        _modules[key] = found
    return found


def _top_level(body: list[ast.stmt]) -> dict[str, list[ast.stmt]]:
    """Names bound at module level, including inside top-level ``if``/``try``/``with``."""
    defs: dict[str, list[ast.stmt]] = {}
    for stmt in _flatten(body):
        for name in _bound(stmt):
            defs.setdefault(name, []).append(stmt)
    return defs


def _flatten(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    for stmt in body:
        if isinstance(stmt, ast.If | ast.Try | ast.With):
            yield from _flatten(stmt.body)
            yield from _flatten(getattr(stmt, "orelse", []))
            yield from _flatten(getattr(stmt, "finalbody", []))
            for handler in getattr(stmt, "handlers", []):
                yield from _flatten(handler.body)
        else:
            yield stmt


def _bound(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [stmt.name]
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return [(a.asname or a.name).split(".")[0] for a in stmt.names]
    if isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return []


def _find(tree: ast.Module, name: str, first_line: int) -> _Def | None:
    """The definition of the function whose code starts at `first_line` (its first decorator,
    or its ``def``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            starts = [node.lineno, *(d.lineno for d in node.decorator_list)]
            if first_line in starts:
                return node
    return None


def _without_decorators(node: _Def) -> _Def:
    # The decorator holds the task's options, which the template records already.
    bare = copy.copy(node)
    bare.decorator_list = []
    return bare


def _dependencies(root: ast.AST, module: _Module, seen: set[str]) -> list[ast.stmt]:
    """Module-level statements binding the names `root` uses, transitively."""
    out: list[ast.stmt] = []
    pending = [root]
    while pending:
        node = pending.pop()
        for name in sorted(_names(node)):
            if name in seen or name not in module.defs:
                continue
            seen.add(name)
            for stmt in module.defs[name]:
                out.append(stmt)
                pending.append(stmt)
    return out


def _names(node: ast.AST) -> set[str]:
    # Every name read or written, locals included: a local that shadows a module-level name
    # only makes the digest cover a little more than needed.
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _dump(node: object) -> str:
    """A node as text: its type and its non-empty fields, without positions.

    Empty fields are left out so that fields added by newer Pythons (empty by default, such
    as ``type_params``) do not change the text.
    """
    if isinstance(node, ast.AST):
        fields = []
        for name, value in ast.iter_fields(node):
            if value is None or value == []:
                continue
            fields.append(f"{name}={_dump(value)}")
        return f"{type(node).__name__}({', '.join(fields)})"
    if isinstance(node, list):
        return "[" + ", ".join(_dump(v) for v in node) + "]"
    return repr(node)


__all__ = ["code_digest"]
