"""Counts-only watching (`ExecutionsService.watch_progress`) on every store backend, from the
replica that drives the execution (its live graph) and from one that does not (the store)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from plait import _runtime
from plait._local import LocalEngine
from plait_engine.app import Engine, build_engine
from plait_engine.config import EngineConfig
from plait_engine.service.progress import Progress
from plait_engine.store import Store
from plait_engine.store.memory import MemoryStore
from plait_engine.store.postgres import PostgresStore
from plait_engine.store.sqlite import SqliteStore
from plaitidl.core.v1 import execution_pb2

from tests.support.engines import start, with_engine
from tests.workflows import chatty, gated

EP = execution_pb2
Factory = Callable[[Path], Awaitable[Store]]


@pytest.fixture(params=["memory", "postgres", "sqlite"])
def factory(request: pytest.FixtureRequest) -> Factory:
    """Stores of one backend on the same state, one per engine as for replicas (memory: one
    store shared; PostgreSQL: a new database of the session's server)."""
    if request.param == "memory":
        shared = MemoryStore()

        async def _memory(tmp: Path) -> Store:
            return shared

        return _memory
    if request.param == "sqlite":

        async def _sqlite(tmp: Path) -> Store:
            return SqliteStore(tmp / "shared.db")

        return _sqlite
    url: str = request.getfixturevalue("postgres_url")

    async def _postgres(tmp: Path) -> Store:
        store = PostgresStore(url)
        await store.open()
        return store

    return _postgres


def _engine(data_dir: Path, store: Store) -> Engine:
    return build_engine(
        EngineConfig(data_dir=data_dir),
        task_runner=_runtime.execute,
        runner_checks_outputs=True,
        store=store,
    )


async def _follow(views: AsyncIterator[Progress], seen: asyncio.Event) -> list[Progress]:
    out = []
    async for v in views:
        out.append(v)
        if any(name == "held" for name, _ in v.running):
            seen.set()
    return out


def test_progress_from_the_driving_replica_and_another_one(
    factory: Factory, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    n = 6

    async def open_gate(seen: list[asyncio.Event]) -> None:
        try:  # the tasks run until both watchers have seen them run (or a while passed)
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in seen)), 60)
        finally:
            gate.touch()

    async def main() -> tuple[list[Progress], list[Progress]]:
        # Two engines on one store: the first drives the execution, the second only reads.
        driver = _engine(tmp_path / "a", await factory(tmp_path))
        reader = _engine(tmp_path / "b", await factory(tmp_path))
        await driver.start()
        await reader.start()
        try:
            rec = await start(driver, gated.held_wf, gate=str(gate), n=n)
            seen = [asyncio.Event(), asyncio.Event()]
            here, there, _ = await asyncio.gather(
                _follow(driver.executions.watch_progress(rec, 0), seen[0]),
                _follow(reader.executions.watch_progress(rec, 0), seen[1]),
                open_gate(seen),
            )
            return here, there
        finally:
            await reader.stop()  # each closes its store
            await driver.stop()

    here, there = asyncio.run(main())
    for views in (here, there):
        assert views[0].phase_changed
        assert views[-1].record.phase == EP.EXECUTION_PHASE_SUCCEEDED
        assert views[-1].phase_changed and not views[-1].running
        assert views[-1].counts["succeeded"] == views[-1].counts["total"] == n + 1
        assert ("held", n) in {r for v in views for r in v.running}
        # A view is sent only when what it shows changed.
        assert all(a.key() != b.key() for a, b in itertools.pairwise(views))


def test_local_engine_counts_only_after_the_end(tmp_path: Path) -> None:
    names: list[str] = []

    async def body(engine: object) -> None:
        rec = await start(engine, chatty.doomed_wf, reason="out of paper")  # type: ignore[arg-type]
        await engine.executions.wait(rec)  # type: ignore[attr-defined]
        names.append(rec.name)

    with_engine(tmp_path, body)
    with LocalEngine(tmp_path / "data") as local:
        views = list(local.watch(names[0], counts_only=True))
        full = list(local.watch(names[0]))
    assert len(views) == 1 and views[0].sequence == full[-1].sequence
    (event,) = views[0].events
    assert event.execution.phase == EP.EXECUTION_PHASE_FAILED
    assert "out of paper" in event.execution.error.message
    assert views[0].nodes.failed == 1
