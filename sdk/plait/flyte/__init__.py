"""Run what flytekit produces on plait: translation flyteidl ⇄ plaitidl, import, and the shim.

Needs the ``plait[flyte]`` extra (flyteidl and msgpack); the tasks' own environment needs
flytekit too. Nothing is imported until a name is used, so ``plait`` itself works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait.flyte._convert import to_flyte, to_plait
    from plait.flyte._errors import FlyteRefusedError, Refusal
    from plait.flyte._ids import Options
    from plait.flyte._import import ImportResult, import_package
    from plait.flyte._package import Package, Translation, read_package, translate_package

__all__ = [
    "Options",
    "read_package",
    "translate_package",
    "import_package",
    "to_plait",
    "to_flyte",
    "Package",
    "Translation",
    "ImportResult",
    "FlyteRefusedError",
    "Refusal",
]

_HOME = {
    "Options": "plait.flyte._ids",
    "read_package": "plait.flyte._package",
    "translate_package": "plait.flyte._package",
    "Package": "plait.flyte._package",
    "Translation": "plait.flyte._package",
    "import_package": "plait.flyte._import",
    "ImportResult": "plait.flyte._import",
    "to_plait": "plait.flyte._convert",
    "to_flyte": "plait.flyte._convert",
    "FlyteRefusedError": "plait.flyte._errors",
    "Refusal": "plait.flyte._errors",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'plait.flyte' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)
