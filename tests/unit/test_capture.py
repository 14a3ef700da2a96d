"""Per-attempt capture of stdout, stderr and logging (`plait._capture`), as the embedded engine
and the worker use it: attempts on concurrent threads get only their own lines."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import pytest
from plait import _capture
from plait._capture import LOGGER, STDERR, STDOUT


def _capturing(
    got: list[tuple[int, str]], max_bytes: int = _capture.DEFAULT_MAX_BYTES
) -> tuple[Any, Any]:
    return _capture.start(lambda s, t: got.append((s, t)), max_bytes)


def test_concurrent_attempts_capture_only_their_own_output(
    capsys: pytest.CaptureFixture[str],
) -> None:
    got: dict[str, list[tuple[int, str]]] = {"a": [], "b": []}
    both_inside = threading.Barrier(2)

    def attempt(name: str) -> None:
        handle = _capturing(got[name])
        try:
            both_inside.wait()
            for i in range(3):
                print(f"{name}{i}")
            print(f"{name}-err", file=sys.stderr)
        finally:
            _capture.stop(handle)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    print("not captured")
    for t in threads:
        t.join()
    for name in "ab":
        assert got[name] == [
            *((STDOUT, f"{name}{i}") for i in range(3)),
            (STDERR, f"{name}-err"),
        ]
    assert capsys.readouterr().out == "not captured\n"


def test_partial_lines_long_lines_and_the_byte_bound() -> None:
    got: list[tuple[int, str]] = []
    handle = _capturing(got)
    sys.stdout.write("no newline yet")
    sys.stdout.write(" ... done\nand a rest")
    _capture.stop(handle)
    assert got == [(STDOUT, "no newline yet ... done"), (STDOUT, "and a rest")]

    got.clear()
    handle = _capturing(got)
    sys.stdout.write("x" * 100_000)  # a progress bar that never ends its line
    _capture.stop(handle)
    assert [len(t) for _, t in got] == [100_000]

    got.clear()
    handle = _capturing(got, max_bytes=30)
    for i in range(10):
        print(f"line {i}")
    _capture.stop(handle)
    assert [t for _, t in got[:-1]] == ["line 0", "line 1", "line 2", "line 3"]
    assert got[-1] == (
        STDERR,
        "... 42 more bytes of output were not kept (the limit is 30 bytes per attempt)",
    )


def test_logging_records_of_the_attempt_are_captured(capsys: pytest.CaptureFixture[str]) -> None:
    got: list[tuple[int, str]] = []
    logger = logging.getLogger("test_capture.task")
    root = logging.getLogger()
    others = [h for h in root.handlers if not isinstance(h, _capture._Handler)]
    for h in others:  # as in a program that never configured logging
        root.removeHandler(h)
    try:
        handle = _capturing(got)
        logger.warning("disk at %d%%", 91)
        _capture.stop(handle)
        # Outside an attempt, such a program still sees its warnings (last resort).
        logger.warning("outside")
    finally:
        for h in others:
            root.addHandler(h)
    assert got == [(LOGGER, "WARNING test_capture.task: disk at 91%")]
    err = capsys.readouterr().err
    assert "outside" in err and "disk at" not in err
