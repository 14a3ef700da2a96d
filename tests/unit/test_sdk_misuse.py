"""Every misuse fails early with a PlaitError subclass whose message says what to do."""

from __future__ import annotations

from typing import Any

import pytest
from plait import LaunchPlan, PlaitError, conditional, dynamic, map_task, task, workflow
from plait._errors import PlaitTypeError


@task
def inc(x: int) -> int:
    return x + 1


@task
def to_str(x: int) -> str:
    return str(x)


@dynamic
def gen(n: int) -> list[int]:
    return [inc(x=i) for i in range(n)]


def _compile(wf: Any) -> None:
    _ = wf.template


def test_unsupported_type() -> None:
    with pytest.raises(PlaitTypeError, match="input 'x'"):

        @task
        def t(x: object) -> int:
            return 1


def test_missing_input_annotation() -> None:
    with pytest.raises(PlaitTypeError, match="input 'x' has no type annotation"):

        @task
        def t(x) -> int:  # type: ignore[no-untyped-def]
            return 1


def test_missing_return_annotation() -> None:
    with pytest.raises(PlaitTypeError, match="missing return annotation"):

        @task
        def t(x: int):  # type: ignore[no-untyped-def]
            return 1


def test_unknown_argument() -> None:
    with pytest.raises(PlaitTypeError, match="unknown argument 'y'"):
        inc(y=1)  # type: ignore[call-arg]


def test_missing_argument_in_workflow() -> None:
    @workflow
    def wf(a: int) -> int:
        return inc()  # type: ignore[call-arg]

    with pytest.raises(PlaitTypeError, match="is missing argument 'x'"):
        _compile(wf)


def test_positional_arguments_in_workflow() -> None:
    @workflow
    def wf(a: int) -> int:
        return inc(a)

    with pytest.raises(PlaitTypeError, match=r"positional arguments .* inc\(x=\.\.\.\)"):
        _compile(wf)


def test_promise_in_if() -> None:
    @workflow
    def wf(a: int) -> int:
        if a:
            return inc(x=a)
        return inc(x=a)

    with pytest.raises(PlaitTypeError, match=r"as a bool .* conditional\(\.\.\.\) .* @dynamic"):
        _compile(wf)


def test_promise_comparison_in_if() -> None:
    @workflow
    def wf(a: int) -> int:
        if a > 3:
            return inc(x=a)
        return inc(x=a)

    with pytest.raises(PlaitTypeError, match=r"not Python 'if'"):
        _compile(wf)


def test_promise_in_for() -> None:
    @workflow
    def wf(xs: list[int]) -> int:
        for x in xs:
            inc(x=x)
        return 0

    with pytest.raises(PlaitTypeError, match=r"Iterating .* @dynamic"):
        _compile(wf)


def test_promise_len() -> None:
    @workflow
    def wf(xs: list[int]) -> int:
        return len(xs)

    with pytest.raises(PlaitTypeError, match=r"len\(\)"):
        _compile(wf)


def test_promise_arithmetic() -> None:
    @workflow
    def wf(a: int) -> int:
        return inc(x=a + 1)

    with pytest.raises(PlaitTypeError, match="Arithmetic"):
        _compile(wf)


def test_and_between_conditions() -> None:
    @workflow
    def wf(a: int) -> int:
        return conditional("c").if_(a > 1 and a < 5).then(inc(x=a)).else_().then(inc(x=a))

    with pytest.raises(PlaitTypeError, match=r"combine conditions with & and \|"):
        _compile(wf)


def test_wrong_output_count() -> None:
    @workflow
    def wf(a: int) -> tuple[int, int]:
        return inc(x=a)  # type: ignore[return-value]

    with pytest.raises(PlaitTypeError, match="returned 1 value but declares 2 outputs"):
        _compile(wf)

    @workflow
    def wf2(a: int) -> int:
        return inc(x=a), inc(x=a)  # type: ignore[return-value]

    with pytest.raises(PlaitTypeError, match="returned 2 values but declares 1 output"):
        _compile(wf2)


def test_output_type_mismatch() -> None:
    @workflow
    def wf(a: int) -> int:
        return to_str(x=a)  # type: ignore[return-value]

    with pytest.raises(PlaitTypeError, match=r"output 'o0' .* has type .* is expected"):
        _compile(wf)


def test_input_type_mismatch() -> None:
    @workflow
    def wf(a: int) -> int:
        return inc(x=to_str(x=a))  # type: ignore[arg-type]

    with pytest.raises(PlaitTypeError, match=r"input 'x' of task .* has type"):
        _compile(wf)


def test_conditional_without_else() -> None:
    @workflow
    def wf(a: int) -> int:
        return conditional("c").if_(a > 1).then(inc(x=a))  # type: ignore[return-value]

    with pytest.raises(PlaitError, match=r"has no else_\(\)|needs an else_\(\)"):
        _compile(wf)


def test_then_without_if() -> None:
    @workflow
    def wf(a: int) -> int:
        return conditional("c").then(5)

    with pytest.raises(PlaitTypeError, match=r"\.then\(\.\.\.\) without \.if_"):
        _compile(wf)


def test_then_takes_one_call() -> None:
    @workflow
    def wf(a: int) -> int:
        return conditional("c").if_(a > 1).then(inc(x=inc(x=a))).else_().then(inc(x=a))

    with pytest.raises(PlaitError, match="exactly one"):
        _compile(wf)


def test_conditional_outside_a_body() -> None:
    with pytest.raises(PlaitTypeError, match="only be used inside a @workflow or @dynamic"):
        conditional("c")


def test_map_task_over_non_task() -> None:
    with pytest.raises(PlaitTypeError, match="maps a @task"):
        map_task(len)
    with pytest.raises(PlaitTypeError, match="maps a @task"):
        map_task(gen)


def test_launch_plan_unknown_fixed_input() -> None:
    @workflow
    def wf(a: int) -> int:
        return inc(x=a)

    with pytest.raises(PlaitTypeError, match="fixed input 'b' is not an input of workflow"):
        LaunchPlan(wf, "lp", fixed_inputs={"b": 1})


def test_recursive_workflow() -> None:
    @workflow
    def wf(a: int) -> int:
        return wf(a=a)

    with pytest.raises(
        PlaitError, match="cannot be recursive: put the recursive call in a @dynamic"
    ):
        _compile(wf)


def test_variadic_parameters() -> None:
    with pytest.raises(PlaitTypeError, match=r"\*args"):

        @task
        def t(*args: int) -> int:
            return 1
