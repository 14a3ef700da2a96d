"""`current_context()` and per-attempt output capture, through the runtime a task runner calls."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from plait import PlaitError, _capture, _runtime, _types, current_context
from plait._attempt import Attempt
from plaitidl.core.v1 import errors_pb2, identifier_pb2, literals_pb2
from plaitidl.service.v1 import execution_service_pb2 as es

from tests.workflows import chatty


def _inputs(**values: Any) -> literals_pb2.LiteralMap:
    return literals_pb2.LiteralMap(
        literals={k: _types.to_literal(v, type(v), var=k) for k, v in values.items()}
    )


def _attempt(node: str, attempt: int, lines: list[tuple[int, str]]) -> Attempt:
    def log(stream: int, text: str) -> None:
        lines.append((stream, text))

    task = identifier_pb2.Identifier(name="chatty.talk", version="v1")
    return Attempt("proj/dom/x123", node, attempt, task, log)


def test_stream_values_are_the_protos() -> None:
    assert _capture.STDOUT == es.LOG_STREAM_STDOUT
    assert _capture.STDERR == es.LOG_STREAM_STDERR
    assert _capture.LOGGER == es.LOG_STREAM_LOGGER


def test_context_output_and_traceback_of_each_attempt(capfd: pytest.CaptureFixture[str]) -> None:
    first: list[tuple[int, str]] = []
    result = _runtime.execute(chatty.talk.template, _inputs(word="hi"), _attempt("n0", 1, first))
    assert isinstance(result, errors_pb2.ExecutionError) and result.recoverable
    assert (es.LOG_STREAM_STDOUT, "stdout hi attempt 1") in first
    assert (es.LOG_STREAM_STDERR, "stderr hi") in first
    assert (es.LOG_STREAM_LOGGER, "WARNING chatty: logging hi") in first
    assert (es.LOG_STREAM_LOGGER, "INFO plait.task: context logger hi at n0") in first
    stderr = [t for s, t in first if s == es.LOG_STREAM_STDERR]
    # The traceback starts at the task's own code, not in the runtime.
    assert stderr[1] == "Traceback (most recent call last):"
    assert "chatty.py" in stderr[2] and stderr[-1] == "ValueError: first attempt of hi fails"

    second: list[tuple[int, str]] = []
    result = _runtime.execute(chatty.talk.template, _inputs(word="hi"), _attempt("n0", 2, second))
    assert isinstance(result, literals_pb2.LiteralMap)
    value = result.literals["o0"].scalar.primitive.string_value
    assert value == "proj/dom/x123|n0|chatty.talk"
    assert (es.LOG_STREAM_STDOUT, "stdout hi attempt 2") in second
    # Nothing reached the real streams.
    out, err = capfd.readouterr()
    assert "hi" not in out and "hi" not in err


def test_threads_keep_their_own_output() -> None:
    logs: dict[int, list[tuple[int, str]]] = {i: [] for i in range(8)}
    template = chatty.shout.template

    def run(i: int) -> None:
        for _ in range(20):
            _runtime.execute(template, _inputs(i=i), _attempt(f"n{i}", 1, logs[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, lines in logs.items():
        assert lines == [(es.LOG_STREAM_STDOUT, f"element {i} of n{i}")] * 20


def test_partial_lines_are_kept_until_the_end_and_bounded() -> None:
    lines: list[tuple[int, str]] = []
    handle = _capture.start(lambda s, t: lines.append((s, t)))
    try:
        print("a", end="")
        print("b", end="")
        print("c\nd", end="")
        print("x" * (70 << 10), end="")
    finally:
        _capture.stop(handle)
    assert lines[0] == (es.LOG_STREAM_STDOUT, "abc")
    assert lines[1][1].startswith("dxxx") and len(lines) == 2
    print("after")  # no sink any more: the real stdout


def test_outside_a_task_the_context_is_refused() -> None:
    with pytest.raises(PlaitError, match="only available while a task runs"):
        current_context()
    # A task called as a plain function has no attempt either.
    with pytest.raises(PlaitError, match="only available while a task runs"):
        chatty.talk(word="x")
