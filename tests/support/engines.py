"""Embedded engines for integration tests, built by the same composition root as `plait run`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from plait import _embedded, _runtime, _serialize
from plait_engine.app import Engine, build_engine
from plait_engine.config import EngineConfig
from plait_engine.store import ExecutionRecord
from plaitidl.core.v1 import literals_pb2


def embedded_engine(data_dir: Path, **settings: Any) -> Engine:
    """An engine running SDK tasks in this process, state in `data_dir`."""
    return build_engine(
        EngineConfig(data_dir=data_dir, **settings),
        task_runner=_runtime.execute,
        runner_checks_outputs=True,
    )


def with_engine(tmp_path: Path, body: Callable[[Engine], Awaitable[None]], **settings: Any) -> None:
    """Run `body` against a started embedded engine in ``tmp_path/data``; stop it after."""

    async def main() -> None:
        engine = embedded_engine(tmp_path / "data", **settings)
        await engine.start()
        try:
            await body(engine)
        finally:
            await engine.stop()

    asyncio.run(main())


async def start(engine: Engine, entity: Any, **inputs: object) -> ExecutionRecord:
    """Register an SDK workflow (or launch plan) and start it."""
    bundle = _serialize.collect(entity)
    await engine.registry.register(bundle.tasks, bundle.workflows, bundle.launch_plans)
    literals = _embedded.inputs_to_literals(entity, inputs)
    if bundle.root.resource_type == 3:
        return await engine.executions.create(launch_plan_id=bundle.root, inputs=literals)
    return await engine.executions.create(workflow_id=bundle.root, inputs=literals)


async def outputs(engine: Engine, rec: ExecutionRecord) -> literals_pb2.LiteralMap:
    """An execution's outputs."""
    return (await engine.executions.data(rec))[1]


def read_store(db: Path, fn: Callable[[Any], Awaitable[Any]]) -> Any:
    """Open a data dir's SQLite store, return what `fn(store)` returns, close it."""
    from plait_engine.store.sqlite import SqliteStore

    async def main() -> Any:
        store = SqliteStore(db)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(main())
