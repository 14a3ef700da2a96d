"""The embedded engine: plait's engine in this process, state in a local data dir.

`plait run` and calling a workflow from plain Python both come here. The engine is the same
compiler and scheduler a server runs; only the executor differs (tasks run in-process).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from plaitidl.core.v1 import errors_pb2, execution_pb2, identifier_pb2, literals_pb2

from plait import _loader, _runtime, _serialize, _types
from plait._constants import DATA_DIR_NAME, ENV_DATA_DIR, LABEL_ENTITY, LABEL_SOURCE
from plait._errors import ExecutionFailedError, PlaitError, PlaitTypeError
from plait._launch_plan import LaunchPlan
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


ProgressFn = Callable[[dict[str, int]], None]


def _engine(data_dir: Path) -> Any:
    from plait_engine.app import build_engine
    from plait_engine.config import EngineConfig

    return build_engine(
        EngineConfig(data_dir=data_dir),
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


async def _run_async(
    entity: Entity | None,
    inputs: literals_pb2.LiteralMap,
    data_dir: Path,
    *,
    resume: str | None,
    progress: ProgressFn | None,
    name: str = "",
    labels: Mapping[str, str] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> RunResult:
    engine = _engine(data_dir)
    executions = engine.executions
    await engine.start()
    try:
        if resume:
            rec, entity = await _resume(engine, resume, entity)
        else:
            if entity is None:
                raise PlaitError("nothing to run: give a workflow, launch plan or task")
            bundle = _serialize.collect(entity)
            await engine.registry.register(bundle.tasks, bundle.workflows, bundle.launch_plans)
            is_lp = bundle.root.resource_type == identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN
            rec = await executions.create(
                workflow_id=None if is_lp else bundle.root,
                launch_plan_id=bundle.root if is_lp else None,
                inputs=inputs,
                name=name,
                labels=dict(labels or {}),
            )
        if on_start is not None:
            on_start(rec.name)
        started = time.monotonic()
        final = await executions.wait(
            rec,
            on_change=None if progress is None else lambda r: progress(executions.counts(r)),
        )
        counts = executions.counts(final)
        if progress is not None:
            progress(counts)
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
    *,
    resume: str | None = None,
    progress: ProgressFn | None = None,
    name: str = "",
    labels: Mapping[str, str] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> RunResult:
    """Run a workflow (or launch plan) on an embedded engine until it ends.

    `on_start` is called with the execution's name once it is stored (it can be resumed from
    then on).
    """
    return asyncio.run(
        _run_async(
            entity,
            inputs,
            data_dir or default_data_dir(),
            resume=resume,
            progress=progress,
            name=name,
            labels=labels,
            on_start=on_start,
        )
    )


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


class ProgressBar:
    """A one-line live progress bar of nodes done / running / failed on a terminal."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self._stream = stream
        self._width = width
        self._last = 0.0
        self._shown = False

    def __call__(self, counts: dict[str, int]) -> None:
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        total = max(counts["total"], 1)
        done = counts["succeeded"] + counts["skipped"]
        filled = int(self._width * done / total)
        bar = "#" * filled + "." * (self._width - filled)
        self._stream.write(
            f"\r[{bar}] {done}/{counts['total']} nodes done, {counts['running']} running, "
            f"{counts['failed']} failed, {counts['cached']} cached "
        )
        self._stream.flush()
        self._shown = True

    def close(self, counts: dict[str, int]) -> None:
        """Draw the final state and end the line."""
        self._last = 0.0
        self(counts)
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()
