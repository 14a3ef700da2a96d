"""Capturing what a task writes while it runs in this process: per attempt, by thread.

Used by every runner of SDK tasks: the embedded engine and the worker.

Tasks run in threads that share `sys.stdout`, `sys.stderr` and the logging tree. While an
attempt runs, its thread holds a `_Sink` in a `ContextVar`: the stream proxies and the logging
handler installed here hand what that thread writes to the sink, which cuts it into lines and
passes them to the attempt's ``log(stream, text)``. Writes from threads without a sink (the
engine, the CLI) go to the real streams. Nothing is installed until the first attempt runs.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any, TextIO

# `plaitidl.service.v1.execution_service_pb2.LogStream` values (a test pins them): the SDK
# does not import the service protos for tasks that never talk to an engine.
STDOUT = 1
STDERR = 2
LOGGER = 3

LogFn = Callable[[int, str], None]

DEFAULT_MAX_BYTES = 1 << 20
"""Output passed on per attempt at most; the rest is counted and summarized at the end."""

# A line longer than this without a newline is passed on in pieces: a task printing with
# end="" forever must not grow a buffer without bound.
_MAX_PARTIAL = 64 << 10
TASK_LOGGER = "plait.task"
_FORMAT = "%(levelname)s %(name)s: %(message)s"


class _Sink:
    """One attempt's output on its way to `log`, in whole lines, at most `max_bytes`."""

    __slots__ = ("dropped", "log", "max_bytes", "partial", "sent")

    def __init__(self, log: LogFn, max_bytes: int) -> None:
        self.log = log
        self.max_bytes = max_bytes
        self.partial: dict[int, str] = {}
        self.sent = 0
        self.dropped = 0

    def _emit(self, stream: int, line: str) -> None:
        size = len(line.encode("utf-8", "replace")) + 1
        if self.sent + size > self.max_bytes:
            self.dropped += size
            return
        self.sent += size
        self.log(stream, line)

    def write(self, stream: int, text: str) -> None:
        buf = self.partial.pop(stream, "") + text
        head, newline, tail = buf.rpartition("\n")
        if newline:
            for line in head.split("\n"):
                self._emit(stream, line)
        if len(tail) > _MAX_PARTIAL:
            self._emit(stream, tail)
        elif tail:
            self.partial[stream] = tail

    def line(self, stream: int, text: str) -> None:
        for line in text.split("\n"):
            self._emit(stream, line)

    def close(self) -> None:
        for stream, rest in sorted(self.partial.items()):
            self._emit(stream, rest)
        self.partial.clear()
        if self.dropped:
            self.log(
                STDERR,
                f"... {self.dropped} more bytes of output were not kept (the limit is "
                f"{self.max_bytes} bytes per attempt)",
            )


_sink: ContextVar[_Sink | None] = ContextVar("plait_output_sink", default=None)
_lock = threading.Lock()


class _Proxy:
    """Stands in for `sys.stdout` or `sys.stderr`: a task's writes to its sink, the rest on."""

    def __init__(self, original: TextIO, stream: int) -> None:
        self._original = original
        self._stream = stream

    def write(self, text: str) -> int:
        sink = _sink.get()
        if sink is None:
            return self._original.write(text)
        sink.write(self._stream, text)
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if _sink.get() is None:
            self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class _Handler(logging.Handler):
    """Routes log records of a thread running an attempt to the attempt's log."""

    def emit(self, record: logging.LogRecord) -> None:
        sink = _sink.get()
        if sink is not None:
            sink.line(LOGGER, self.format(record))
            return
        # Outside a task, behave as if this handler were not there: Python's last resort
        # prints warnings when no other handler is configured.
        last = logging.lastResort
        if (
            last is not None
            and record.name != TASK_LOGGER
            and logging.getLogger().handlers == [self]
            and record.levelno >= last.level
        ):
            last.handle(record)


class _State:
    handler: _Handler | None = None
    installed = False


def _install() -> None:
    with _lock:
        for name, stream in (("stdout", STDOUT), ("stderr", STDERR)):
            current = getattr(sys, name)
            if current is not None and not isinstance(current, _Proxy):
                setattr(sys, name, _Proxy(current, stream))
        if _State.handler is None:
            _State.handler = _Handler()
            _State.handler.setFormatter(logging.Formatter(_FORMAT))
        handler = _State.handler
        root = logging.getLogger()
        if handler not in root.handlers:  # first time, or someone reset the handlers
            root.addHandler(handler)
        task_logger = logging.getLogger(TASK_LOGGER)
        if handler not in task_logger.handlers:
            task_logger.setLevel(logging.INFO)
            task_logger.propagate = False  # its lines belong to the attempt, nowhere else
            task_logger.addHandler(handler)
        _State.installed = True


def task_logger() -> logging.Logger:
    """The logger whose lines land in the current attempt's log (stream LOGGER)."""
    _install()
    return logging.getLogger(TASK_LOGGER)


def start(log: LogFn, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[Token[_Sink | None], _Sink]:
    """Send what this thread writes (stdout, stderr, logging) to `log` until `stop`, at most
    `max_bytes` (then a line saying how much more there was).

    A pair of plain calls rather than a context manager: this runs once per task attempt, on
    the embedded engine's hot path.
    """
    if (
        not _State.installed
        or not isinstance(sys.stdout, _Proxy)
        or _State.handler not in logging.root.handlers
    ):
        _install()
    sink = _Sink(log, max_bytes)
    return _sink.set(sink), sink


def stop(handle: tuple[Token[_Sink | None], _Sink]) -> None:
    """End what `start` began: the last partial lines are passed on."""
    token, sink = handle
    _sink.reset(token)
    sink.close()


__all__ = [
    "DEFAULT_MAX_BYTES",
    "LOGGER",
    "STDERR",
    "STDOUT",
    "LogFn",
    "start",
    "stop",
    "task_logger",
]
