"""Per-attempt capture of stdout, stderr and logging (`plait._capture`), as the worker uses it."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from plait import _capture
from plait._capture import LOGGER, STDERR, STDOUT


@contextmanager
def installed() -> Iterator[io.StringIO]:
    """Capture installed over a known stdout; what goes to the original stdout is returned.

    (Inside the test body: pytest puts its own stdout back before each test phase.)
    """
    original = io.StringIO()
    saved = sys.stdout
    sys.stdout = original
    _capture.install()
    try:
        yield original
    finally:
        _capture.uninstall()
        assert sys.stdout is original  # the original put back
        sys.stdout = saved


def test_concurrent_attempts_capture_only_their_own_output() -> None:
    got: dict[str, list[tuple[int, str]]] = {"a": [], "b": []}
    both_inside = threading.Barrier(2)

    def attempt(name: str) -> None:
        with _capture.capturing(lambda stream, text: got[name].append((stream, text))):
            both_inside.wait()
            for i in range(3):
                print(f"{name}{i}")
            print(f"{name}-err", file=sys.stderr)

    with installed() as original:
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
    assert original.getvalue() == "not captured\n"


def test_partial_lines_long_lines_and_the_byte_bound() -> None:
    got: list[tuple[int, str]] = []
    with installed(), _capture.capturing(lambda s, t: got.append((s, t))):
        sys.stdout.write("no newline yet")
        sys.stdout.write(" ... done\nand a rest")
    assert got == [(STDOUT, "no newline yet ... done"), (STDOUT, "and a rest")]

    got.clear()
    with installed(), _capture.capturing(lambda s, t: got.append((s, t))):
        sys.stdout.write("x" * 100_000)  # a progress bar that never ends its line
    assert [len(t) for _, t in got] == [100_000]

    got.clear()
    with installed(), _capture.capturing(lambda s, t: got.append((s, t)), max_bytes=30) as cap:
        for i in range(10):
            print(f"line {i}")
    assert [t for _, t in got[:-1]] == ["line 0", "line 1", "line 2", "line 3"]
    assert cap.dropped == 42
    assert got[-1] == (STDERR, "... 42 more bytes of output were not sent (the limit is 30 "
                       "bytes per attempt)")  # fmt: skip


def test_logging_records_of_the_attempt_are_captured(capsys: pytest.CaptureFixture[str]) -> None:
    got: list[tuple[int, str]] = []
    logger = logging.getLogger("test_capture.task")
    root = logging.getLogger()
    others = list(root.handlers)  # as in a program that never configured logging
    for h in others:
        root.removeHandler(h)
    try:
        with installed():
            with _capture.capturing(lambda s, t: got.append((s, t))):
                logger.warning("disk at %d%%", 91)
            # Outside an attempt, such a program still sees its warnings (last resort).
            logger.warning("outside")
    finally:
        for h in others:
            root.addHandler(h)
    assert got == [(LOGGER, "WARNING test_capture.task: disk at 91%")]
    err = capsys.readouterr().err
    assert "outside" in err and "disk at" not in err


def test_install_is_counted() -> None:
    saved = sys.stdout
    _capture.install()
    _capture.install()
    proxy = sys.stdout
    _capture.uninstall()
    assert sys.stdout is proxy  # one install still in effect
    _capture.uninstall()
    assert sys.stdout is saved
    _capture.uninstall()  # more uninstalls than installs: harmless
    assert sys.stdout is saved
