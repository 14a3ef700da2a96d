"""The worker's in-flight assignments: results coalesce into batches without delaying a lone
result; withdrawn and late results are dropped; task threads run at most `slots` at once.

Windows here are long (seconds) so that a wrongful wait cannot hide in scheduling noise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from plait._inflight import Inflight, Slots


def _later(delay: float, fn: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        fn()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _timed_take(box: Inflight, timeout: float = 10.0) -> tuple[list[bytes], float]:
    t0 = time.monotonic()
    out = box.take(timeout)
    return out, time.monotonic() - t0


def test_a_lone_result_is_not_held_for_the_window() -> None:
    box = Inflight(window=30.0)
    box.received(["a"])
    _later(0.05, lambda: box.finish("a", b"ra"))
    out, took = _timed_take(box)
    assert out == [b"ra"] and took < 5.0


def test_results_finishing_close_together_leave_in_one_batch() -> None:
    box = Inflight(window=30.0, horizon=60.0)
    box.received(["a", "b", "c"])
    box.finish("a", b"ra")
    _later(0.1, lambda: box.finish("b", b"rb"))
    _later(0.3, lambda: box.finish("c", b"rc"))
    out, took = _timed_take(box)
    # Sent as soon as nothing is left in flight, not at the end of the window.
    assert out == [b"ra", b"rb", b"rc"] and 0.25 <= took < 5.0
    assert box.idle()


def test_the_window_bounds_the_wait_for_neighbours() -> None:
    box = Inflight(window=0.3, horizon=60.0)
    box.received(["a", "slow"])
    box.finish("a", b"ra")
    out, took = _timed_take(box)
    assert out == [b"ra"] and 0.25 <= took < 5.0
    assert not box.idle()  # "slow" is still in flight


def test_neighbours_in_flight_for_long_are_not_waited_for() -> None:
    box = Inflight(window=30.0, horizon=0.1)
    box.received(["long"])
    time.sleep(0.2)  # "long" is now taken for a long-running task
    box.received(["quick"])
    box.finish("quick", b"rq")
    out, took = _timed_take(box)
    assert out == [b"rq"] and took < 5.0


def test_take_waits_for_a_first_result_and_returns_nothing_on_timeout() -> None:
    box = Inflight(window=30.0)
    out, took = _timed_take(box, 0.2)
    assert out == [] and 0.15 <= took < 5.0
    box.received(["a"])
    _later(0.1, lambda: box.finish("a", b"ra"))
    out, took = _timed_take(box, 10.0)
    assert out == [b"ra"] and took < 5.0


def test_withdrawn_assignments_finish_without_a_result() -> None:
    box = Inflight(window=0.0)
    box.received(["a", "b", "c"])
    assert box.cancel(["a", "unknown"]) == ["a"]
    assert box.start("a") is False  # withdrawn before it started: not run
    assert box.start("b") is True
    assert box.cancel(["b"]) == ["b"]  # withdrawn while it runs
    box.finish("b", b"rb")  # ran to the end anyway: its result is unwanted
    assert box.start("c", skip=True) is False  # the worker stops: not started
    assert box.take(0.05) == [] and box.idle()


def test_a_heartbeat_sees_each_assignment_answered_or_running() -> None:
    box = Inflight(window=30.0)
    box.received(["a", "b"])
    box.finish("a", b"ra")
    results, running = box.take_for_heartbeat()
    assert results == [b"ra"] and running == ["b"]
    assert box.take_for_heartbeat() == ([], ["b"])


def test_a_closed_session_drops_its_results_and_wakes_the_sender() -> None:
    box = Inflight(window=30.0)
    box.received(["a", "b"])
    box.finish("a", b"ra")
    box.close()
    box.finish("b", b"rb")
    assert box.closed and box.take(10.0) == []
    assert box.start("c") is False


@pytest.mark.parametrize("n", [1, 4])
def test_slots_run_up_to_n_calls_at_once(n: int) -> None:
    slots = Slots(n)
    barrier = threading.Barrier(n, timeout=10)  # passes only when n calls run at once
    lock = threading.Lock()
    running = peak = 0
    done = threading.Semaphore(0)

    def call(i: int) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        if i < n:
            barrier.wait()
        time.sleep(0.01)
        with lock:
            running -= 1
        done.release()

    try:
        for i in range(3 * n):
            slots.submit(call, i)
        for _ in range(3 * n):
            assert done.acquire(timeout=10)
        assert peak == n
    finally:
        slots.close()


def test_slots_keep_serving_after_a_call_fails() -> None:
    slots = Slots(1)
    got: list[int] = []
    done = threading.Event()

    def bad(_: int) -> None:
        raise RuntimeError("a bug in the runner")

    def good(i: int) -> None:
        got.append(i)
        done.set()

    try:
        slots.submit(bad, 0)
        slots.submit(good, 1)
        assert done.wait(10) and got == [1]
    finally:
        slots.close()
