"""Importing user code: files and modules, and worker handlers ("module:qualname")."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from pathlib import Path
from typing import Any

from plait._errors import HandlerNotFoundError, PlaitValueError
from plait._task import Task

__all__ = ["HandlerNotFoundError", "load_path", "resolve_handler"]

_lock = threading.Lock()
_handlers: dict[str, Task[Any, Any]] = {}


def load_path(path_or_module: str) -> types.ModuleType:
    """Imports a ``.py`` file or a dotted module name.

    A file is imported under the dotted name Python itself would give it: its stem, prefixed
    by the packages (folders with an ``__init__.py``) it sits in, with the folder above the
    outermost package put first on ``sys.path``. So ``pkg/flows.py`` is ``pkg.flows``, the
    same module as ``import pkg.flows``, and a worker that loads the same file (or imports the
    module) computes the same task names and handlers.

    Raises:
        PlaitValueError: The file does not exist.
        ImportError: The module cannot be imported.
    """
    if path_or_module.endswith(".py") or "/" in path_or_module or "\\" in path_or_module:
        path = Path(path_or_module).resolve()
        if not path.is_file():
            raise PlaitValueError(f"no such Python file: {path_or_module}")
        root, name = _module_name(path)
        if not sys.path or sys.path[0] != root:
            sys.path.insert(0, root)
        existing = sys.modules.get(name)
        if existing is not None:
            existing_file = getattr(existing, "__file__", None)
            if existing_file and Path(existing_file).resolve() == path:
                return existing
        if "." in name:
            module = importlib.import_module(name)
            found = getattr(module, "__file__", None)
            if not found or Path(found).resolve() != path:
                raise PlaitValueError(
                    f"{path_or_module} is module {name}, but {name} was imported from {found}"
                )
            return module
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise PlaitValueError(f"cannot import {path_or_module}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    return importlib.import_module(path_or_module)


def _module_name(path: Path) -> tuple[str, str]:
    """The folder to import from and the dotted module name of a ``.py`` file."""
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder.name.isidentifier():
        parts.append(folder.name)
        if folder.parent == folder:
            break
        folder = folder.parent
    return str(folder), ".".join(reversed(parts))


def resolve_handler(handler: str) -> Task[Any, Any]:
    """The task a ``"module:qualname"`` handler names, importing the module if needed.

    Results are cached.

    Raises:
        HandlerNotFoundError: Malformed handler, import failure, or not a task.
    """
    found = _handlers.get(handler)
    if found is not None:
        return found
    with _lock:
        found = _handlers.get(handler)
        if found is not None:
            return found
        module_name, sep, qualname = handler.partition(":")
        if not sep or not module_name or not qualname:
            raise HandlerNotFoundError(f"malformed handler '{handler}': expected module:qualname")
        try:
            obj: Any = importlib.import_module(module_name)
        except Exception as exc:
            raise HandlerNotFoundError(
                f"handler '{handler}': cannot import module '{module_name}': {exc!r}"
            ) from exc
        for part in qualname.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError as exc:
                raise HandlerNotFoundError(
                    f"handler '{handler}': '{module_name}' has no '{qualname}'"
                ) from exc
        if not isinstance(obj, Task):
            raise HandlerNotFoundError(f"handler '{handler}' is {obj!r}, not a @task / @dynamic")
        _handlers[handler] = obj
        return obj
