"""An engine and its gRPC server on a background loop of the test process.

Tests that must read the engine's counters (worker sessions, stats) run it here instead of as a
`plait serve` subprocess; workers and clients are still separate processes or real gRPC calls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from plait import _embedded, _serialize
from plait_engine.api.server import build_server
from plait_engine.app import build_engine
from plait_engine.config import EngineConfig
from plait_engine.executors.workers import WorkerStats
from plait_engine.store import ExecutionRecord
from plaitidl.core.v1 import errors_pb2, execution_pb2

T = TypeVar("T")


class EngineServer:
    """An engine and its gRPC server on a loop in a background thread."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        settings = {"heartbeat_interval": 0.2, "lease_duration": 1.0, **settings}
        self.engine = build_engine(EngineConfig(data_dir=data_dir, **settings))
        assert self.engine.workers is not None
        self.sessions = self.engine.workers
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.address = self.call(self._start())

    async def _start(self) -> str:
        await self.engine.start()
        self.server, _ = build_server(self.engine)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return f"127.0.0.1:{port}"

    def call(self, coro: Awaitable[T], timeout: float = 60) -> T:
        return self.submit(coro).result(timeout)

    def submit(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        async def wrap() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop)

    def on_loop(self, fn: Callable[[], T]) -> T:
        async def wrap() -> T:
            return fn()

        return self.call(wrap())

    def stats(self) -> WorkerStats:
        return self.on_loop(self.sessions.stats)

    def wait_for(self, what: Callable[[WorkerStats], bool], timeout: float = 40) -> WorkerStats:
        end = time.monotonic() + timeout
        while True:
            st = self.stats()
            if what(st):
                return st
            assert time.monotonic() < end, f"timed out waiting; stats: {st}"
            time.sleep(0.05)

    def register(self, entity: Any) -> None:
        """Register an SDK workflow with everything it references."""
        bundle = _serialize.collect(entity)
        self.call(
            self.engine.registry.register(bundle.tasks, bundle.workflows, bundle.launch_plans)
        )

    def start_execution(self, entity: Any, **kwargs: Any) -> ExecutionRecord:
        root = _serialize.collect(entity).root
        inputs = _embedded.inputs_to_literals(entity, kwargs)
        return self.call(self.engine.executions.create(workflow_id=root, inputs=inputs))

    def wait(self, rec: ExecutionRecord, timeout: float = 30) -> ExecutionRecord:
        return self.call(self.engine.executions.wait(rec, timeout=timeout), timeout + 5)

    def outputs(self, entity: Any, rec: ExecutionRecord) -> object:
        assert rec.phase == execution_pb2.EXECUTION_PHASE_SUCCEEDED, (
            errors_pb2.ExecutionError.FromString(rec.error)
        )
        _, out = self.call(self.engine.executions.data(rec))
        return _serialize.outputs_to_python(entity, out)

    def nodes(self, rec: ExecutionRecord) -> list[Any]:
        return self.call(self.engine.store.node_records(rec.eid))

    def close(self) -> None:
        async def stop() -> None:
            await self.server.stop(0.5)
            await self.engine.stop()

        self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
