"""Loading workflow files: a file inside a package gets its package-qualified name, so the
client, the CLI and a worker that load it (by path or by import) name its tasks alike."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from plait import _loader
from plait._errors import PlaitValueError

FLOWS = """
import plait

@plait.task
def hello(name: str) -> str:
    return "hi " + name
"""


@pytest.fixture
def clean_modules() -> object:
    before = set(sys.modules)
    path = list(sys.path)
    yield None
    for name in set(sys.modules) - before:
        del sys.modules[name]
    sys.path[:] = path


def test_a_file_in_a_package_is_named_like_its_import(
    tmp_path: Path, clean_modules: object
) -> None:
    pkg = tmp_path / "loadpkg_a" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "loadpkg_a" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "flows.py").write_text(FLOWS)
    module = _loader.load_path(str(pkg / "flows.py"))
    assert module.__name__ == "loadpkg_a.sub.flows"
    assert module.hello.template.id.name == "loadpkg_a.sub.flows.hello"
    assert module.hello.template.worker.handler == "loadpkg_a.sub.flows:hello"
    # The handler a worker is sent resolves to the same task, and loading twice is one module.
    assert _loader.resolve_handler("loadpkg_a.sub.flows:hello") is module.hello
    assert _loader.load_path(str(pkg / "flows.py")) is module


def test_a_file_outside_packages_is_named_by_its_stem(
    tmp_path: Path, clean_modules: object
) -> None:
    (tmp_path / "loadflat_b.py").write_text(FLOWS)
    module = _loader.load_path(str(tmp_path / "loadflat_b.py"))
    assert module.__name__ == "loadflat_b"
    assert module.hello.template.id.name == "loadflat_b.hello"


def test_a_package_shadowed_by_another_module_is_refused(
    tmp_path: Path, clean_modules: object
) -> None:
    for root in ("one", "two"):
        pkg = tmp_path / root / "loadpkg_c"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "flows.py").write_text(FLOWS)
    _loader.load_path(str(tmp_path / "one" / "loadpkg_c" / "flows.py"))
    with pytest.raises(PlaitValueError, match=r"loadpkg_c\.flows was imported from"):
        _loader.load_path(str(tmp_path / "two" / "loadpkg_c" / "flows.py"))


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PlaitValueError, match="no such Python file"):
        _loader.load_path(str(tmp_path / "nope.py"))
