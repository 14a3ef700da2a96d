"""The one place `plait.flyte` touches the rest of plait: registering and running templates.

Embedded: an engine built by ``plait_engine.app`` on a local data dir (as `plait run` does),
with no in-process task runner: imported Flyte tasks are process targets. Remote: the public
`plait.Client`. Keep every such reference here, so that a reorganised SDK or engine is
re-pointed in one file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plaitidl.core.v1 import errors_pb2, execution_pb2, identifier_pb2, literals_pb2, types_pb2
from plaitidl.service.v1 import registry_service_pb2 as rs

from plait.flyte._inputs import coerce


@dataclass(frozen=True)
class Remote:
    """How to reach a `plait serve` (the `Client` arguments)."""

    address: str
    token: str | None = None
    tls: bool = False
    ca_cert: str | None = None


@dataclass
class RunOutcome:
    """How a run ended.

    Attributes:
        execution: ``project/domain/name`` of the execution.
        phase: ``SUCCEEDED``, ``FAILED`` or ``ABORTED``.
        outputs: The outputs (empty unless it succeeded).
        error: The engine's error (empty unless it failed).
        counts: Node counts: total, succeeded, failed, cached, ...
        output_types: The workflow's output types by name.
    """

    execution: str
    phase: str
    outputs: literals_pb2.LiteralMap
    error: errors_pb2.ExecutionError
    counts: dict[str, int] = field(default_factory=dict)
    output_types: dict[str, types_pb2.LiteralType] = field(default_factory=dict)


def default_data_dir() -> Path:
    """The embedded engine's data dir (``$PLAIT_DATA_DIR`` or ``~/.plait``)."""
    from plait._embedded import default_data_dir as dd

    return dd()


def literals_from_values(variables: Any, values: Mapping[str, object]) -> literals_pb2.LiteralMap:
    """Python values as a literal map typed by a plait variable map."""
    from plait._types import to_literal_map_by_type

    return to_literal_map_by_type(variables, values)


def value_from_literal(lit: literals_pb2.Literal, lt: types_pb2.LiteralType, name: str) -> object:
    """A literal of type `lt` as a plain Python value."""
    from plait._types import to_python_by_type

    return to_python_by_type(lit, lt, var=name)


def _client(remote: Remote) -> Any:
    from plait import Client

    return Client(remote.address, token=remote.token, tls=remote.tls, ca_cert=remote.ca_cert)


def register(
    request: rs.RegisterRequest, *, data_dir: Path | None = None, remote: Remote | None = None
) -> tuple[list[identifier_pb2.Identifier], list[identifier_pb2.Identifier]]:
    """Register templates; returns ``(created, unchanged)`` identifiers."""
    if remote is not None:
        with _client(remote) as client:
            response = client.register_templates(request)
        return list(response.created), list(response.unchanged)

    async def embedded() -> tuple[list[Any], list[Any]]:
        engine = _engine(data_dir)
        await engine.start()
        try:
            result = await engine.registry.register(
                request.tasks, request.workflows, request.launch_plans
            )
        finally:
            await engine.stop()
        return list(result.created), list(result.unchanged)

    return asyncio.run(embedded())


def _engine(data_dir: Path | None) -> Any:
    from plait_engine.app import build_engine
    from plait_engine.config import EngineConfig
    from plait_engine.executors.process import ProcessPolicy

    # Imported Flyte tasks are process targets: no in-process runner, and this engine drives
    # only the executions it starts. It is the user's own: their commands are allowed.
    engine = build_engine(
        EngineConfig(data_dir=data_dir or default_data_dir()),
        process_policy=ProcessPolicy.allow_all(),
    )
    engine.scheduler.config.adopt = False
    return engine


def _phase(phase: int) -> str:
    return execution_pb2.ExecutionPhase.Name(phase).removeprefix("EXECUTION_PHASE_")  # type: ignore[arg-type]


def run(
    launch_plan: identifier_pb2.Identifier,
    values: Mapping[str, object],
    *,
    data_dir: Path | None = None,
    remote: Remote | None = None,
    name: str = "",
) -> RunOutcome:
    """Launch a registered launch plan with Python input values and wait for the end."""
    if remote is not None:
        return _run_remote(remote, launch_plan, values, name)
    return asyncio.run(_run_embedded(data_dir, launch_plan, values, name))


async def _run_embedded(
    data_dir: Path | None, lp_id: identifier_pb2.Identifier, values: Mapping[str, object], name: str
) -> RunOutcome:
    from plait_engine.store import TemplateKind

    engine = _engine(data_dir)
    await engine.start()
    try:
        lp = await engine.registry.get(TemplateKind.LAUNCH_PLAN, lp_id)
        wf = await engine.registry.get(TemplateKind.WORKFLOW, lp.workflow_id)
        rec = await engine.executions.create(
            launch_plan_id=lp.id,
            inputs=literals_from_values(wf.interface.inputs, coerce(wf.interface.inputs, values)),
            project=lp.id.project,
            domain=lp.id.domain,
            name=name,
        )
        final = await engine.executions.wait(rec)
        _, outputs = await engine.executions.data(final)
        return RunOutcome(
            execution=f"{final.project}/{final.domain}/{final.name}",
            phase=_phase(final.phase),
            outputs=outputs,
            error=errors_pb2.ExecutionError.FromString(final.error),
            counts=engine.executions.counts(final),
            output_types={v.name: v.type for v in wf.interface.outputs.variables},
        )
    finally:
        await engine.stop()


def _run_remote(
    remote: Remote, lp_id: identifier_pb2.Identifier, values: Mapping[str, object], name: str
) -> RunOutcome:
    from plait._errors import ExecutionFailedError

    with _client(remote) as client:
        lp = client.get_launch_plan(lp_id)
        wf = client.get_workflow(lp.workflow_id)
        inputs = literals_from_values(wf.interface.inputs, coerce(wf.interface.inputs, values))
        handle = client.execute(lp.id, inputs, name=name)
        try:
            client.wait(handle)
        except ExecutionFailedError:
            pass  # reported through the state below
        state = client.get(handle)
        counts = {
            k: getattr(state.nodes, k)
            for k in ("total", "succeeded", "running", "failed", "skipped", "cached")
        }
        outputs = (
            client.data(handle).outputs
            if state.phase == execution_pb2.EXECUTION_PHASE_SUCCEEDED
            else literals_pb2.LiteralMap()
        )
        return RunOutcome(
            execution=f"{state.id.project}/{state.id.domain}/{state.id.name}",
            phase=_phase(state.phase),
            outputs=outputs,
            error=state.error,
            counts=counts,
            output_types={v.name: v.type for v in wf.interface.outputs.variables},
        )
