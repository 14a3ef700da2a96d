"""Code-aware versions: a task's version follows its code and what it uses from its module."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path
from typing import Any

from plait import _loader

_counter = itertools.count()

BASE = '''
from plait import task

SCALE = 2
UNUSED = 1


def helper(x: int) -> int:
    return x * SCALE


def unrelated() -> int:
    return 0


@task(retries=1)
def double(x: int) -> int:
    """Doubles."""
    return helper(x)
'''


def _task(tmp_path: Path, source: str, name: str = "double") -> Any:
    # A new module name each time: each load is a fresh import of an edited file.
    path = tmp_path / f"codemod_{next(_counter)}.py"
    path.write_text(textwrap.dedent(source))
    return getattr(_loader.load_path(str(path)), name)


def _digest(tmp_path: Path, source: str) -> str:
    digest: str = _task(tmp_path, source).template.metadata.code_digest
    return digest


def test_digest_is_set_and_part_of_the_version(tmp_path: Path) -> None:
    t = _task(tmp_path, BASE)
    assert len(t.template.metadata.code_digest) == 16
    edited = _task(tmp_path, BASE.replace("return helper(x)", "return helper(x) + 0"))
    assert edited.template.metadata.code_digest != t.template.metadata.code_digest
    assert edited.id.version != t.id.version


def test_what_changes_the_digest(tmp_path: Path) -> None:
    base = _digest(tmp_path, BASE)
    changed = {
        "body": BASE.replace("return helper(x)", "return helper(x + 0)"),
        "helper": BASE.replace("return x * SCALE", "return SCALE * x"),
        "constant": BASE.replace("SCALE = 2", "SCALE = 3"),
        "docstring": BASE.replace('"""Doubles."""', '"""Twice."""'),
    }
    for what, source in changed.items():
        assert _digest(tmp_path, source) != base, what


def test_what_does_not_change_the_digest(tmp_path: Path) -> None:
    base = _digest(tmp_path, BASE)
    same = {
        "comments and blank lines": BASE.replace("def helper", "# a comment\n\n\ndef helper"),
        "formatting": BASE.replace("return x * SCALE", "return (x  *  SCALE)"),
        "an unused constant": BASE.replace("UNUSED = 1", "UNUSED = 5"),
        "an unrelated function": BASE.replace("return 0", "return 1"),
        "line endings": BASE.replace("\n", "\r\n"),
        "the order of definitions": BASE.replace("SCALE = 2\n", "") + "\nSCALE = 2\n",
        "the decorator's options": BASE.replace("@task(retries=1)", "@task(retries=3)"),
    }
    for what, source in same.items():
        assert _digest(tmp_path, source) == base, what


def test_recursion_and_cycles_terminate(tmp_path: Path) -> None:
    source = """
    from plait import task

    def even(n: int) -> bool:
        return True if n == 0 else odd(n - 1)

    def odd(n: int) -> bool:
        return False if n == 0 else even(n - 1)

    @task
    def is_even(n: int) -> bool:
        return even(n)
    """
    t = _task(tmp_path, source, "is_even")
    assert len(t.template.metadata.code_digest) == 16
    edited_source = source.replace("n - 1)\n\n    @task", "n - 2)\n\n    @task")
    edited = _task(tmp_path, edited_source, "is_even")
    assert edited.template.metadata.code_digest != t.template.metadata.code_digest


def test_a_function_without_source_has_no_digest() -> None:
    from plait import task

    namespace: dict[str, Any] = {"task": task}
    exec("@task\ndef f(x: int) -> int:\n    return x\n", namespace)
    assert namespace["f"].template.metadata.code_digest == ""
