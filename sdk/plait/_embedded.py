"""The embedded engine: plait's engine in this process, state in a local data dir.

`plait run` and calling a workflow from plain Python both come here. The engine is the same
compiler and scheduler a server runs; only the executor differs (tasks run in-process).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plaitidl.core.v1 import errors_pb2, execution_pb2, identifier_pb2, literals_pb2

from plait import _attempt, _loader, _runtime, _serialize, _types
from plait._constants import DATA_DIR_NAME, ENV_DATA_DIR, LABEL_ENTITY, LABEL_SOURCE
from plait._errors import ExecutionFailedError, PlaitError, PlaitTypeError
from plait._launch_plan import LaunchPlan
from plait._progress import Snapshot
from plait._serialize import Entity
from plait._task import Task
from plait._workflow import Workflow

EP = execution_pb2


def default_data_dir() -> Path:
    """``$PLAIT_DATA_DIR`` or ``~/.plait``."""
    return Path(os.environ.get(ENV_DATA_DIR) or Path.home() / DATA_DIR_NAME)


@dataclass
class RunResult:
    """The end of an embedded run."""

    execution: str
    phase: str
    outputs: literals_pb2.LiteralMap
    error: errors_pb2.ExecutionError
    counts: dict[str, int]
    seconds: float
    entity: Entity | None = None


ProgressFn = Callable[[Snapshot], None]


@dataclass
class RunOptions:
    """How `run` runs.

    Attributes:
        name: The new execution's name (generated when empty).
        labels: Its labels.
        resume: The name of a stored execution to continue instead of starting one.
        progress: Called with a `Snapshot` after each commit that changed the execution.
        on_start: Called with the execution's name once it is stored (it can be resumed from
            then on).
        config: The engine's settings (limits); by default `EngineConfig` with the data dir.
        target: A registered workflow or launch plan to run instead of an SDK entity.
    """

    name: str = ""
    labels: Mapping[str, str] | None = None
    resume: str | None = None
    progress: ProgressFn | None = None
    on_start: Callable[[str], None] | None = None
    config: Any = None
    target: identifier_pb2.Identifier | None = None


def embedded_config(data_dir: Path, **settings: Any) -> Any:
    """The embedded engine's `EngineConfig`: its own defaults (no 10,000-node ceiling; see
    `plait_engine.config.EMBEDDED_DEFAULTS`), then `settings`."""
    from plait_engine.config import EMBEDDED_DEFAULTS, EngineConfig

    return EngineConfig(data_dir=data_dir, **{**EMBEDDED_DEFAULTS, **settings})


def _engine(data_dir: Path, config: Any) -> Any:
    from plait_engine.app import build_engine

    if config is None:
        # Secrets of the tasks that run here (plugin tasks): a folder, then PLAIT_SECRET_*.
        secrets = os.environ.get("PLAIT_SECRETS_DIR")
        config = embedded_config(data_dir, secrets_dir=Path(secrets) if secrets else None)
    return build_engine(
        config,
        task_runner=_runtime.execute,
        runner_checks_outputs=True,
    )


async def _resume(engine: Any, execution: str, entity: Entity | None) -> tuple[Any, Entity | None]:
    """The stored execution to resume (driven here again unless it has ended) and its
    entity."""
    rec = await engine.executions.get("", "", execution)
    source = rec.labels.get(LABEL_SOURCE)
    if source and entity is None:
        # Tasks run in this process: their code must be importable before resuming.
        module = _loader.load_path(source)
        found = getattr(module, rec.labels.get(LABEL_ENTITY, ""), None)
        entity = found if _is_entity(found) else None
    # An execution that has already ended is reported as it is.
    return await engine.executions.resume(rec), entity


async def _create(
    engine: Any, entity: Entity | None, inputs: literals_pb2.LiteralMap, options: RunOptions
) -> Any:
    root = options.target
    if entity is not None:
        bundle = _serialize.collect(entity)
        await engine.registry.register(bundle.tasks, bundle.workflows, bundle.launch_plans)
        root = bundle.root
    if root is None:
        raise PlaitError("nothing to run: give a workflow, launch plan or task")
    is_lp = root.resource_type == identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN
    return await engine.executions.create(
        workflow_id=None if is_lp else root,
        launch_plan_id=root if is_lp else None,
        inputs=inputs,
        name=options.name,
        labels=dict(options.labels or {}),
    )


def _watcher(engine: Any, options: RunOptions) -> Callable[[Any], None]:
    """What runs after each commit: the progress bar, and termination asked for by another
    process (``plait executions terminate``), which only the driving process can apply."""
    executions = engine.executions
    asked: set[int] = set()

    def on_change(rec: Any) -> None:
        if rec.terminate_reason and not rec.terminal and rec.eid not in asked:
            asked.add(rec.eid)
            engine.scheduler.terminate(rec.eid, rec.terminate_reason)
        if options.progress is not None:
            running = _attempt.active()
            options.progress(
                Snapshot(
                    executions.counts(rec),
                    running=[name for name, dynamic in running if not dynamic],
                    building=[name for name, dynamic in running if dynamic],
                )
            )

    return on_change


async def _run_async(
    entity: Entity | None,
    inputs: literals_pb2.LiteralMap,
    data_dir: Path,
    options: RunOptions,
) -> RunResult:
    engine = _engine(data_dir, options.config)
    executions = engine.executions
    await engine.start()
    try:
        if options.resume:
            rec, entity = await _resume(engine, options.resume, entity)
        else:
            rec = await _create(engine, entity, inputs, options)
        if options.on_start is not None:
            options.on_start(rec.name)
        started = time.monotonic()
        final = await executions.wait(rec, on_change=_watcher(engine, options))
        counts = executions.counts(final)
        _, outputs = await executions.data(final)
        return RunResult(
            execution=final.name,
            phase=EP.ExecutionPhase.Name(final.phase).removeprefix("EXECUTION_PHASE_"),
            outputs=outputs,
            error=errors_pb2.ExecutionError.FromString(final.error),
            counts=counts,
            seconds=time.monotonic() - started,
            entity=entity,
        )
    finally:
        await engine.stop()


def run(
    entity: Entity | None,
    inputs: literals_pb2.LiteralMap,
    data_dir: Path | None = None,
    options: RunOptions | None = None,
) -> RunResult:
    """Run a workflow (or launch plan, or task) on an embedded engine until it ends."""
    out: list[RunResult] = []

    async def main() -> None:
        # The result goes through `out`, not as the coroutine's return value: Python 3.11's
        # runner repr()s the finished task (so its result: every output) when it restores the
        # SIGINT handler, which costs seconds for a million outputs.
        where = data_dir or default_data_dir()
        out.append(await _run_async(entity, inputs, where, options or RunOptions()))

    asyncio.run(main())
    return out[0]


def _is_entity(obj: object) -> bool:
    return isinstance(obj, Task | Workflow | LaunchPlan)


def inputs_to_literals(entity: Entity, values: Mapping[str, object]) -> literals_pb2.LiteralMap:
    """Convert Python keyword arguments to the entity's input literals."""
    hints, _, _ = _serialize.python_interface(entity)
    out = literals_pb2.LiteralMap()
    for k, v in values.items():
        if k not in hints:
            raise PlaitTypeError(f"unknown input {k!r}; inputs are {sorted(hints)}")
        out.literals[k].CopyFrom(_types.to_literal(v, hints[k], var=k))
    return out


def run_locally(entity: Entity, kwargs: Mapping[str, object]) -> object:
    """Run a workflow called with plain values, in a throwaway data dir; returns its outputs."""
    with tempfile.TemporaryDirectory(prefix="plait-local-") as tmp:
        result = run(entity, inputs_to_literals(entity, kwargs), Path(tmp))
    if result.phase != "SUCCEEDED":
        raise ExecutionFailedError(result.execution, result.phase, result.error)
    return _serialize.outputs_to_python(entity, result.outputs)
