"""Capture of a task attempt's output: stdout, stderr and `logging` records, per attempt.

Tasks of one process run concurrently (worker slots are threads), so output cannot be captured
by swapping `sys.stdout` per attempt. Instead `install()` puts proxies in place of
`sys.stdout` and `sys.stderr` and a handler on the root logger, once per process; each proxy
sends what is written to the `Capture` of the current context (`capturing`), and to the
original stream when there is none. The current capture lives in a `ContextVar`: the thread
that runs the attempt and the asyncio tasks it starts write to it; threads the task starts
itself, subprocesses and writes to file descriptor 1 or 2 are not captured.

Used by the worker (`plait._worker`) and reusable by any runner of tasks in this process::

    _capture.install()
    try:
        with _capture.capturing(lambda stream, text: ...) as cap:
            run_the_task()
    finally:
        _capture.uninstall()
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

STDOUT = 1
STDERR = 2
LOGGER = 3
"""Stream numbers, as in ``LogChunk.Stream`` and ``LogStream``."""

LogSink = Callable[[int, str], None]
"""Receives ``(stream, text)``: whole lines of one stream, newline-separated."""

DEFAULT_MAX_BYTES = 1 << 20
# A line longer than this is cut (progress bars without newlines must not grow without bound).
_MAX_LINE = 64 << 10
_FORMAT = "%(levelname)s %(name)s: %(message)s"

_current: ContextVar[Capture | None] = ContextVar("plait_capture", default=None)


class Capture:
    """The captured output of one attempt: complete lines go to `sink`, at most `max_bytes`.

    Args:
        sink: Receives ``(stream, text)``; called on the writing thread.
        max_bytes: Bytes passed on at most; the rest is counted and summarized by `close`.
    """

    def __init__(self, sink: LogSink, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._sink = sink
        self._max = max_bytes
        self._lock = threading.Lock()
        self._partial: dict[int, str] = {}
        self.sent = 0
        self.dropped = 0

    def write(self, stream: int, text: str) -> None:
        """Add output of `stream`; whole lines are passed on, the rest waits for its newline."""
        with self._lock:
            text = self._partial.pop(stream, "") + text
            cut = text.rfind("\n")
            if cut < 0 and len(text) < _MAX_LINE:
                self._partial[stream] = text
                return
            if cut < 0:
                cut = len(text)
            done, rest = text[:cut], text[cut + 1 :]
            if rest:
                self._partial[stream] = rest
            self._emit(stream, done)

    def _emit(self, stream: int, text: str) -> None:
        size = len(text.encode("utf-8", errors="replace")) + 1
        if self.sent + size > self._max:
            self.dropped += size
            return
        self.sent += size
        self._sink(stream, text)

    def close(self) -> None:
        """Pass on unfinished lines and say how much was dropped."""
        with self._lock:
            for stream, text in sorted(self._partial.items()):
                self._emit(stream, text)
            self._partial.clear()
            if self.dropped:
                self._sink(
                    STDERR,
                    f"... {self.dropped} more bytes of output were not sent (the limit is "
                    f"{self._max} bytes per attempt)",
                )


class _StreamProxy:
    """Stands for `sys.stdout` or `sys.stderr`: the current capture's, else the original."""

    def __init__(self, original: TextIO, stream: int) -> None:
        self._original = original
        self._stream = stream

    def write(self, text: str) -> int:
        cap = _current.get()
        if cap is None:
            return self._original.write(text)
        cap.write(self._stream, text)
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if _current.get() is None:
            self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class _Handler(logging.Handler):
    """Sends records emitted under a capture to it."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        cap = _current.get()
        if cap is not None:
            cap.write(LOGGER, self.format(record) + "\n")
            return
        # Being the root's only handler would silence Python's last-resort output (warnings
        # of a program that never configured logging): keep it.
        last = logging.lastResort
        alone = logging.getLogger().handlers == [self]
        if last is not None and alone and record.levelno >= last.level:
            last.handle(record)


class _Installation:
    """What `install` replaced, and how many installs are in effect."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.saved: tuple[TextIO, TextIO] | None = None
        self.handler: _Handler | None = None


_state = _Installation()


def install() -> None:
    """Route output of captured contexts (`capturing`) to their captures; counted, so that
    every `install` needs one `uninstall`."""
    with _state.lock:
        _state.count += 1
        if _state.count > 1:
            return
        _state.saved = (sys.stdout, sys.stderr)
        sys.stdout = _StreamProxy(sys.stdout, STDOUT)
        sys.stderr = _StreamProxy(sys.stderr, STDERR)
        _state.handler = _Handler()
        logging.getLogger().addHandler(_state.handler)


def uninstall() -> None:
    """Undo one `install`; the last one puts the original streams back."""
    with _state.lock:
        if _state.count == 0:
            return
        _state.count -= 1
        if _state.count:
            return
        if _state.saved is not None:
            sys.stdout, sys.stderr = _state.saved
            _state.saved = None
        if _state.handler is not None:
            logging.getLogger().removeHandler(_state.handler)
            _state.handler = None


@contextmanager
def capturing(sink: LogSink, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Capture]:
    """Capture the output of the current context (see the module doc) until the block ends.

    Output is captured only while `install` is in effect; unfinished lines are passed on when
    the block ends.
    """
    cap = Capture(sink, max_bytes)
    token = _current.set(cap)
    try:
        yield cap
    finally:
        _current.reset(token)
        cap.close()


__all__ = [
    "DEFAULT_MAX_BYTES",
    "LOGGER",
    "STDERR",
    "STDOUT",
    "Capture",
    "LogSink",
    "capturing",
    "install",
    "uninstall",
]
