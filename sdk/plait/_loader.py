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

    A file is imported under its stem as module name, with its folder put first on
    ``sys.path``; a worker process that loads the same file computes the same handler strings
    (``"<stem>:<qualname>"``) and can import them.

    Raises:
        PlaitValueError: The file does not exist.
        ImportError: The module cannot be imported.
    """
    if path_or_module.endswith(".py") or "/" in path_or_module or "\\" in path_or_module:
        path = Path(path_or_module).resolve()
        if not path.is_file():
            raise PlaitValueError(f"no such Python file: {path_or_module}")
        folder, stem = str(path.parent), path.stem
        if not sys.path or sys.path[0] != folder:
            sys.path.insert(0, folder)
        existing = sys.modules.get(stem)
        if existing is not None:
            existing_file = getattr(existing, "__file__", None)
            if existing_file and Path(existing_file).resolve() == path:
                return existing
        spec = importlib.util.spec_from_file_location(stem, path)
        if spec is None or spec.loader is None:
            raise PlaitValueError(f"cannot import {path_or_module}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[stem] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(stem, None)
            raise
        return module
    return importlib.import_module(path_or_module)


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
