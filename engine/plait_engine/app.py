"""The composition root: one place that builds an engine from an `EngineConfig`.

`plait serve` (with worker sessions), the embedded runner (tasks in-process, driving only its
own executions) and the tests all build their engine here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from plaitidl.core.v1 import tasks_pb2

from plait_engine.blob import BlobStore, DataStore, Payloads
from plait_engine.config import EngineConfig
from plait_engine.executors import Executor, TaskRunner
from plait_engine.executors.inprocess import InProcessExecutor
from plait_engine.executors.logs import LogWriter
from plait_engine.executors.process import ProcessExecutor
from plait_engine.executors.workers import WorkerSessions
from plait_engine.scheduler import Scheduler, SchedulerConfig
from plait_engine.service import ExecutionsService, RegistryService
from plait_engine.service.data import DataService
from plait_engine.store import Store
from plait_engine.store.sqlite import SqliteStore
from plait_engine.templates import TemplateSource


@dataclass
class Engine:
    """A built engine: its parts and its two services.

    Attributes:
        config: The configuration it was built from.
        store: Durable state.
        payloads: Large payloads in the blob store.
        scheduler: Drives executions.
        registry: Template use cases.
        executions: Execution use cases.
        workers: Worker sessions (a server), or None (embedded).
        process: The executor of process targets.
        in_process: The executor running SDK tasks in this process (embedded), or None.
        logs: Captured output of attempts, on its way to the store.
        data: Offloaded payloads (values above the inline limit).
    """

    config: EngineConfig
    store: Store
    payloads: Payloads
    scheduler: Scheduler
    registry: RegistryService
    executions: ExecutionsService
    workers: WorkerSessions | None
    process: ProcessExecutor
    in_process: InProcessExecutor | None
    logs: LogWriter
    data: DataService

    def executor_for(self, task: tasks_pb2.TaskTemplate) -> Executor | None:
        """The executor of a task's target."""
        if task.HasField("process"):
            return self.process
        if task.HasField("worker"):
            return self.in_process if self.in_process is not None else self.workers
        return None

    async def start(self) -> None:
        """Start executors and the scheduler (a server adopts unfinished executions)."""
        loop = asyncio.get_running_loop()
        self.logs.start()
        sink = self.scheduler.post_results
        self.process.start(sink, loop)
        if self.workers is not None:
            self.workers.start(sink, loop)
        if self.in_process is not None:
            self.in_process.start(sink, loop)
        await self.scheduler.start()

    async def stop(self) -> None:
        """Stop the scheduler and executors; the store keeps everything for a restart."""
        await self.scheduler.stop()
        await self.process.stop()
        if self.workers is not None:
            await self.workers.stop()
        if self.in_process is not None:
            await self.in_process.stop()
        await self.logs.stop()
        await self.store.close()


def build_engine(
    config: EngineConfig,
    *,
    task_runner: TaskRunner | None = None,
    runner_checks_outputs: bool = False,
    task_threads: int = 8,
    store: Store | None = None,
) -> Engine:
    """Build an engine.

    Args:
        config: Settings.
        task_runner: Runs SDK tasks in this process (the embedded engine); without it, worker
            sessions serve worker targets (a server).
        runner_checks_outputs: Whether `task_runner` checks outputs against the interface.
        task_threads: Threads running in-process tasks.
        store: A store to use instead of the SQLite file in the data dir.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    if store is None:
        store = SqliteStore(
            config.data_dir / "plait.db",
            synchronous=config.sqlite_synchronous,  # type: ignore[arg-type]
        )
    blobs = BlobStore(config.data_dir / "blobs")
    payloads = Payloads(blobs)
    data_store = DataStore(blobs)
    source = TemplateSource(store)
    embedded = task_runner is not None
    logs = LogWriter(store, config.max_log_bytes)
    in_process: InProcessExecutor | None = None
    workers: WorkerSessions | None = None
    if task_runner is not None:
        in_process = InProcessExecutor(
            task_runner, task_threads, trusted=runner_checks_outputs, logs=logs
        )
    else:
        workers = WorkerSessions(
            config.heartbeat_interval,
            config.lease_duration,
            max_message_bytes=config.max_message_bytes,
            inline_limit=config.max_literal_bytes,
            data=data_store,
            logs=logs,
        )
    process = ProcessExecutor(blobs)
    holder: list[Engine] = []

    def executor_for(task: tasks_pb2.TaskTemplate) -> Executor | None:
        return holder[0].executor_for(task)

    limits = config.limits()
    scheduler = Scheduler(
        store,
        executor_for,
        SchedulerConfig(
            limits=limits,
            system_retries=config.system_retries,
            default_timeout=config.default_timeout,
            lease=config.execution_lease,
            adopt=not embedded,
        ),
        source,
        payloads,
    )
    engine = Engine(
        config=config,
        store=store,
        payloads=payloads,
        scheduler=scheduler,
        registry=RegistryService(store, source, limits),
        executions=ExecutionsService(store, payloads, source, scheduler, limits),
        workers=workers,
        process=process,
        in_process=in_process,
        logs=logs,
        data=DataService(
            data_store,
            config.max_literal_bytes,
            chunk_bytes=min(1 << 20, config.max_message_bytes // 4),
        ),
    )
    holder.append(engine)
    return engine
