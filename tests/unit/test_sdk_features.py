"""Conditionals, map tasks, launch plans, structured outputs, and the worker runtime."""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import pytest
from plait import (
    LaunchPlan,
    NonRetryableError,
    _loader,
    _runtime,
    _serialize,
    _types,
    conditional,
    dynamic,
    map_task,
    task,
    workflow,
)
from plaitidl.core.v1 import condition_pb2, dynamic_job_pb2, errors_pb2, literals_pb2


class Stats(NamedTuple):
    total: int
    label: str


@dataclasses.dataclass
class Point:
    x: int
    y: int


@task
def square(x: int) -> int:
    return x * x


@task
def scale(x: int, factor: int) -> int:
    return x * factor


@task
def stats(xs: list[int]) -> Stats:
    return Stats(total=sum(xs), label=f"{len(xs)} items")


@task
def make_point(x: int) -> Point:
    return Point(x=x, y=2 * x)


@task
def negate(x: int) -> int:
    return -x


@task
def flaky(x: int) -> int:
    raise ValueError(f"bad {x}")


@task
def fatal(x: int) -> int:
    raise NonRetryableError("give up")


@task
def lies(x: int) -> int:
    return "not an int"  # type: ignore[return-value]


@workflow
def classify(x: int) -> int:
    return (
        conditional("sign")
        .if_((x > 0) & (x < 100))
        .then(square(x=x))
        .elif_(x == 0)
        .then(negate(x=x))
        .else_()
        .fail("x must be in [0, 100)")
    )


@dynamic
def pick(x: int, threshold: int) -> int:
    return conditional("pick").if_(x > threshold).then(square(x=x)).else_().then(negate(x=x))


def _lm(**values: int) -> literals_pb2.LiteralMap:
    return literals_pb2.LiteralMap(
        literals={k: _types.to_literal(v, int, var=k) for k, v in values.items()}
    )


def test_conditional_with_elif_conjunction_and_fail() -> None:
    tpl = classify.template
    (node,) = tpl.nodes
    branch = node.branch_node
    conj = branch.case.condition.conjunction
    assert conj.operator == condition_pb2.ConjunctionExpression.LOGICAL_OPERATOR_AND
    gt = conj.left_expression.comparison
    assert gt.operator == condition_pb2.ComparisonExpression.OPERATOR_GT
    assert gt.left_value.var == "c0"
    assert gt.right_value.literal.scalar.primitive.integer == 0
    assert [b.var for b in node.inputs] == ["c0"]  # the same promise is bound once
    assert branch.other[0].then_node.id == "n0-case1"
    assert branch.error.message == "x must be in [0, 100)"
    assert tpl.outputs[0].binding.promise.node_id == "n0"


def test_dynamic_conditional_on_plain_values_and_locally() -> None:
    result = _runtime.execute(pick.template, _lm(x=5, threshold=3))
    assert isinstance(result, dynamic_job_pb2.DynamicJobSpec)
    (node,) = result.nodes
    cond = node.branch_node.case.condition.comparison
    assert cond.left_value.literal.scalar.primitive.boolean is True
    assert node.branch_node.case.then_node.task_node.task_id == square.id
    assert pick(x=5, threshold=3) == 25
    assert pick(x=2, threshold=3) == -2


def test_namedtuple_outputs_and_attribute_paths() -> None:
    @workflow
    def wf(xs: list[int]) -> Stats:
        s = stats(xs=xs)
        p = make_point(x=s.total)
        first = square(x=xs[0])
        return Stats(total=scale(x=p.y, factor=first), label=s.label)

    tpl = wf.template
    assert [v.name for v in tpl.interface.outputs.variables] == ["total", "label"]
    bindings = {b.var: b.binding for b in tpl.nodes[3].inputs}
    assert bindings["x"].promise.attr_path[0].name == "y"
    first = tpl.nodes[2].inputs[0].binding.promise
    assert (first.node_id, first.var, first.attr_path[0].index) == ("start-node", "xs", 0)
    assert tpl.outputs[1].binding.promise.var == "label"
    assert stats(xs=[1, 2]) == Stats(3, "2 items")


def test_map_task_array_node_and_local() -> None:
    mapped = map_task(functools.partial(scale, factor=3), concurrency=2, min_success_ratio=0.5)

    @workflow
    def wf(xs: list[int]) -> list[int | None]:
        out: list[int | None] = mapped(x=xs)
        return out

    (node,) = wf.template.nodes
    arr = node.array_node
    assert arr.node.task_node.task_id == scale.id
    assert arr.parallelism == 2
    assert arr.min_success_ratio == pytest.approx(0.5)
    assert list(arr.broadcast_inputs) == ["factor"]
    assert {b.var for b in node.inputs} == {"x", "factor"}
    assert _serialize.collect(wf).tasks == [scale.template]
    assert map_task(square)(x=[1, 2, 3]) == [1, 4, 9]


def test_launch_plan() -> None:
    lp = LaunchPlan(classify, "classify_five", default_inputs={"x": 5})
    fixed = LaunchPlan(classify, "classify_fixed", fixed_inputs={"x": 7})
    assert lp.proto.default_inputs.parameters[0].default.scalar.primitive.integer == 5
    assert fixed.proto.fixed_inputs.literals["x"].scalar.primitive.integer == 7
    assert not fixed.proto.default_inputs.parameters

    @workflow
    def outer() -> int:
        return lp()

    (node,) = outer.template.nodes
    assert node.workflow_node.launch_plan_id == lp.id
    assert node.inputs[0].binding.literal.scalar.primitive.integer == 5
    bundle = _serialize.collect(outer)
    assert bundle.launch_plans == [lp.proto]
    assert [w.id.name for w in bundle.workflows] == [outer.name, classify.name]


def test_runtime_errors() -> None:
    err = _runtime.execute(flaky.template, _lm(x=1))
    assert isinstance(err, errors_pb2.ExecutionError)
    assert (err.code, err.message, err.recoverable) == ("ValueError", "bad 1", True)
    assert err.kind == errors_pb2.ExecutionError.KIND_USER
    assert "Traceback" in err.details
    err = _runtime.execute(fatal.template, _lm(x=1))
    assert isinstance(err, errors_pb2.ExecutionError)
    assert (err.code, err.recoverable) == ("NonRetryableError", False)
    err = _runtime.execute(lies.template, _lm(x=1))
    assert isinstance(err, errors_pb2.ExecutionError)
    assert err.recoverable is False
    bad = square.template.__deepcopy__()
    bad.worker.handler = "no_such_module_xyz:square"
    err = _runtime.execute(bad, _lm(x=1))
    assert isinstance(err, errors_pb2.ExecutionError)
    assert (err.code, err.recoverable) == ("HandlerNotFound", False)


def test_loader_resolves_handlers() -> None:
    assert _loader.resolve_handler(square.handler) is square
    with pytest.raises(_loader.HandlerNotFoundError, match="has no 'nope'"):
        _loader.resolve_handler(square.handler.split(":")[0] + ":nope")


def test_task_metadata() -> None:
    @task(retries=3, timeout=90, cache=True, cache_version="v2", queue="gpu", name="custom.name")
    def t(a: int) -> None:
        pass

    tpl = t.template
    assert tpl.id.name == "custom.name"
    assert tpl.type == "python-task"
    assert tpl.metadata.retries.retries == 3
    assert tpl.metadata.timeout.seconds == 90
    assert (tpl.metadata.cache, tpl.metadata.cache_version) == (True, "v2")
    assert tpl.metadata.runtime.language == "python"
    assert tpl.worker.queue == "gpu"
    assert not tpl.interface.outputs.variables
    assert pick.template.type == "dynamic"
