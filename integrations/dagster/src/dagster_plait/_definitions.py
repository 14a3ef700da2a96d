"""`plait_asset` and `plait_op`: a plait workflow as a Dagster asset or op, in one call."""

from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg

from dagster_plait._resource import PlaitResource, StepContext

# Inputs of the execution: fixed values, or a function of the step's context (e.g. of its
# partition key).
Inputs = Mapping[str, Any] | Callable[[StepContext], Mapping[str, Any]] | None


def _run(
    context: StepContext,
    resource_key: str,
    target: str,
    inputs: Inputs,
    upstream: Mapping[str, Any],
) -> dg.Output[Any]:
    resource = getattr(context.resources, resource_key)
    if not isinstance(resource, PlaitResource):
        raise dg.DagsterInvalidDefinitionError(
            f"resource {resource_key!r} is {type(resource).__name__}, not a PlaitResource"
        )
    given = inputs(context) if callable(inputs) else dict(inputs or {})
    result = resource.run(context, target, {**given, **upstream})
    return dg.Output(result.outputs, metadata=result.metadata())


def plait_asset(
    target: str,
    *,
    name: str,
    inputs: Inputs = None,
    ins: Mapping[str, dg.AssetIn] | None = None,
    resource_key: str = "plait",
    **asset_kwargs: Any,
) -> dg.AssetsDefinition:
    """An asset whose value is the outputs of a plait execution of `target`.

    The execution's inputs are `inputs` plus the upstream assets named in `ins` (by input name).
    Its outputs become the asset's value (one output as is, several as a dict by name); its
    name, request id, node counts and console link become the materialization's metadata.

    Args:
        target: ``project/domain/name[@version]`` of a registered workflow or launch plan.
        name: The asset's name.
        inputs: Execution inputs, or a function of the context returning them.
        ins: Upstream assets passed as execution inputs, keyed by input name.
        resource_key: The key of the `PlaitResource`.
        **asset_kwargs: More arguments of `dagster.asset` (``partitions_def``,
            ``retry_policy``, ``group_name``, ...).

    Example:
        ```python
        sorted_numbers = plait_asset(
            "default/development/merge_sort.merge_sort",
            name="sorted_numbers",
            ins={"numbers": dg.AssetIn("raw_numbers")},
            inputs={"numbers_count": 10},
        )
        ```
    """

    def _asset(context: dg.AssetExecutionContext, **upstream: Any) -> dg.Output[Any]:
        return _run(context, resource_key, target, inputs, upstream)

    decorate = dg.asset(
        name=name, ins=dict(ins or {}), required_resource_keys={resource_key}, **asset_kwargs
    )
    built = decorate(_asset)
    assert isinstance(built, dg.AssetsDefinition)
    return built


def plait_op(
    target: str,
    *,
    name: str,
    inputs: Inputs = None,
    ins: Mapping[str, dg.In] | None = None,
    resource_key: str = "plait",
    **op_kwargs: Any,
) -> dg.OpDefinition:
    """An op that runs `target` on plait and outputs the execution's outputs.

    Args:
        target: ``project/domain/name[@version]`` of a registered workflow or launch plan.
        name: The op's name.
        inputs: Execution inputs, or a function of the context returning them.
        ins: Op inputs passed as execution inputs, keyed by input name.
        resource_key: The key of the `PlaitResource`.
        **op_kwargs: More arguments of `dagster.op` (``retry_policy``, ``tags``, ...).
    """

    def _op(context: dg.OpExecutionContext, **upstream: Any) -> dg.Output[Any]:
        return _run(context, resource_key, target, inputs, upstream)

    decorate = dg.op(
        name=name, ins=dict(ins or {}), required_resource_keys={resource_key}, **op_kwargs
    )
    built = decorate(_op)
    assert isinstance(built, dg.OpDefinition)
    return built
