"""The composition root: one place that builds an engine from an `EngineConfig`.

`plait serve` (with worker sessions), the embedded runner (tasks in-process, driving only its
own executions) and the tests all build their engine here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from plaitidl.core.v1 import tasks_pb2

from plait_engine.blob import DataStore, ObjectStore, Payloads, open_object_store
from plait_engine.config import ConfigError, EngineConfig
from plait_engine.executors import Executor, TaskRunner
from plait_engine.executors.inprocess import InProcessExecutor
from plait_engine.executors.logs import LogWriter
from plait_engine.executors.plugins import PluginExecutor, runs_in_engine
from plait_engine.executors.process import ProcessExecutor, ProcessPolicy, RunAs
from plait_engine.plugins import Plugins
from plait_engine.scheduler import Scheduler, SchedulerConfig
from plait_engine.secrets import SecretProvider
from plait_engine.service import ExecutionsService, RegistryService
from plait_engine.service.data import DataService
from plait_engine.service.retention import RetentionSweeper
from plait_engine.service.schedules import ScheduleRunner, SchedulesService
from plait_engine.store import Store
from plait_engine.store.sqlite import SqliteStore
from plait_engine.templates import TemplateSource

if TYPE_CHECKING:  # a server's parts (they import grpc): the embedded engine never loads them
    from plait_engine.executors.shared import SharedDispatcher
    from plait_engine.executors.workers import WorkerSessions


@dataclass
class Engine:
    """A built engine: its parts and its two services.

    Attributes:
        config: The configuration it was built from.
        store: Durable state.
        objects: The object store (blobs: large payloads, offloaded values, process files).
        payloads: Large payloads in the object store.
        scheduler: Drives executions.
        registry: Template use cases.
        executions: Execution use cases.
        workers: Worker sessions (a server), or None (embedded).
        shared: The dispatcher through the store's queues (a replica of a cluster), or None.
        process: The executor of process targets.
        in_process: The executor running SDK tasks in this process (embedded), or None.
        logs: Captured output of attempts, on its way to the store.
        retention: Deletes what is older than the retention period.
        schedules: Schedule use cases.
        schedule_runner: Starts the executions of due ticks (servers only).
        data: Offloaded payloads (values above the inline limit).
        plugins: The installed task type plugins, and those that run in the engine.
        plugin_executor: Runs the tasks of the plugins that run in the engine.
    """

    config: EngineConfig
    store: Store
    objects: ObjectStore
    payloads: Payloads
    scheduler: Scheduler
    registry: RegistryService
    executions: ExecutionsService
    workers: WorkerSessions | None
    shared: SharedDispatcher | None
    process: ProcessExecutor
    in_process: InProcessExecutor | None
    logs: LogWriter
    retention: RetentionSweeper
    schedules: SchedulesService
    schedule_runner: ScheduleRunner
    data: DataService
    plugins: Plugins
    plugin_executor: PluginExecutor

    def executor_for(self, task: tasks_pb2.TaskTemplate) -> Executor | None:
        """The executor of a task's target (and type: plugins that run in the engine)."""
        if task.HasField("process"):
            return self.process
        if task.HasField("worker"):
            if runs_in_engine(self.plugins, task.type, embedded=self.in_process is not None):
                return self.plugin_executor
            if self.in_process is not None:
                return self.in_process
            return self.shared if self.shared is not None else self.workers
        return None

    async def start(self) -> None:
        """Open the store, start executors and the scheduler (a server adopts unfinished
        executions).

        Raises:
            StoreError: The store cannot be reached.
        """
        await self.store.open()
        loop = asyncio.get_running_loop()
        self.logs.start()
        sink = self.scheduler.post_results
        self.process.start(sink, loop)
        self.plugin_executor.start(sink, loop)
        if self.shared is not None:
            self.shared.start(sink, loop)  # it starts the worker sessions, answering to it
        elif self.workers is not None:
            self.workers.start(sink, loop)
        if self.in_process is not None:
            self.in_process.start(sink, loop)
        await self.scheduler.start()
        self.retention.start()
        if self.scheduler.config.adopt:  # a server; an embedded runner starts no schedules
            self.schedule_runner.start()

    async def stop(self) -> None:
        """Stop the scheduler and executors; the store keeps everything for a restart."""
        await self.retention.stop()
        await self.schedule_runner.stop()
        await self.scheduler.stop()
        await self.process.stop()
        await self.plugin_executor.stop()
        if self.shared is not None:
            await self.shared.stop()
        elif self.workers is not None:
            await self.workers.stop()
        if self.in_process is not None:
            await self.in_process.stop()
        await self.logs.stop()
        await self.store.close()


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(config: EngineConfig) -> Store:
    """The store `config.store` names: empty for the SQLite file in the data dir, a
    ``postgresql://`` URL for PostgreSQL (connected and migrated by `Store.open`).

    Raises:
        ConfigError: Another kind of URL, or PostgreSQL without the ``postgres`` extra.
    """
    url = config.store.strip()
    if not url:
        return SqliteStore(
            config.data_dir / "plait.db",
            synchronous=config.sqlite_synchronous,  # type: ignore[arg-type]
        )
    if not url.startswith(POSTGRES_SCHEMES):
        raise ConfigError(
            "store must be empty (SQLite in the data dir) or a postgresql:// URL, got "
            f"{url.split('://', 1)[0] + '://...' if '://' in url else repr(url)}"
        )
    try:
        from plait_engine.store.postgres import PostgresStore
    except ImportError as exc:
        raise ConfigError(
            f"store {url.split('://', 1)[0]}://... needs the postgres extra "
            f"(pip install 'plait[postgres]'): {exc}"
        ) from None
    return PostgresStore(url)


def open_blobs(config: EngineConfig) -> ObjectStore:
    """The object store `config.blob_url` names (``DATA_DIR/blobs`` by default).

    Raises:
        ConfigError: A URL naming no store this engine can open, or one whose package is
            missing (the message names the extra to install).
    """
    try:
        return open_object_store(
            config.blob_url,
            data_dir=config.data_dir,
            endpoint=config.blob_endpoint,
            staging=config.data_dir / "staging",
        )
    except (ValueError, ImportError) as exc:
        raise ConfigError(str(exc)) from None


def build_engine(
    config: EngineConfig,
    *,
    task_runner: TaskRunner | None = None,
    runner_checks_outputs: bool = False,
    task_threads: int = 8,
    store: Store | None = None,
    process_policy: ProcessPolicy | None = None,
    plugins: Plugins | None = None,
) -> Engine:
    """Build an engine.

    Args:
        config: Settings.
        task_runner: Runs SDK tasks in this process (the embedded engine); without it, worker
            sessions serve worker targets (a server).
        runner_checks_outputs: Whether `task_runner` checks outputs against the interface.
        task_threads: Threads running in-process tasks.
        store: A store to use instead of the one `config.store` names.
        process_policy: The commands process targets may run. Default: every command for the
            embedded engine (with a `task_runner`: its user runs their own commands), the
            config's `allow_process` patterns otherwise (none: process targets are off).
        plugins: Task type plugins to use instead of the installed ones (entry points of
            ``plait.task_types``, loaded here: every one runs in an embedded engine, those
            `config.plugins` names in a server).

    Raises:
        ConfigError: `config.store` or `config.blob_url` names no store this engine can
            open, or `process_user` names no user, or one the engine may not switch to, or
            `config.plugins` names a plugin that is not installed.
    """
    if process_policy is None:
        process_policy = (
            ProcessPolicy.allow_all()
            if task_runner is not None
            else ProcessPolicy(tuple(config.allow_process))
        )
    run_as = RunAs.lookup(config.process_user)
    embedded = task_runner is not None
    if plugins is None:
        plugins = Plugins.load(config.plugins, embedded=embedded)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    if store is None:
        store = open_store(config)
    blobs = open_blobs(config)
    payloads = Payloads(blobs)
    data_store = DataStore(blobs)
    source = TemplateSource(store)
    logs = LogWriter(store, config.max_log_bytes)
    in_process: InProcessExecutor | None = None
    workers: WorkerSessions | None = None
    if task_runner is not None:
        in_process = InProcessExecutor(
            task_runner, task_threads, trusted=runner_checks_outputs, logs=logs
        )
    else:
        from plait_engine.executors.workers import WorkerSessions

        workers = WorkerSessions(
            config.heartbeat_interval,
            config.lease_duration,
            max_message_bytes=config.max_message_bytes,
            inline_limit=config.max_literal_bytes,
            data=data_store,
            logs=logs,
        )
    process = ProcessExecutor(
        blobs,
        policy=process_policy,
        run_as=run_as,
        logs=logs,
        staging=config.data_dir / "staging",
    )
    plugin_executor = PluginExecutor(
        plugins,
        SecretProvider(config.secrets_dir),
        blobs,
        logs,
        staging=config.data_dir / "staging",
    )
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
    executions = ExecutionsService(
        store, payloads, source, scheduler, limits, config.max_inputs_bytes
    )
    schedule_runner = ScheduleRunner(store, executions, scheduler.owner)
    shared = None
    if workers is not None and (config.cluster or config.store.startswith("postgres")):
        from plait_engine.executors.shared import SharedDispatcher

        shared = SharedDispatcher(store, workers, scheduler.owner, lambda: set(scheduler.runs))
    elif workers is not None:  # a lone server: nodes waiting for a worker say why, QUEUED
        workers.set_waiting_callback(scheduler.on_waiting)
    engine = Engine(
        config=config,
        store=store,
        objects=blobs,
        payloads=payloads,
        scheduler=scheduler,
        registry=RegistryService(
            store,
            source,
            limits,
            process_policy.refusal,
            schedule_runner.poke,
            task_check=plugins.problems,
        ),
        executions=executions,
        workers=workers,
        shared=shared,
        process=process,
        in_process=in_process,
        logs=logs,
        retention=RetentionSweeper(store, executions, blobs, config.retention, scheduler.owner),
        schedules=SchedulesService(store, schedule_runner),
        schedule_runner=schedule_runner,
        data=DataService(
            data_store,
            config.max_literal_bytes,
            chunk_bytes=min(1 << 20, config.max_message_bytes // 4),
        ),
        plugins=plugins,
        plugin_executor=plugin_executor,
    )
    holder.append(engine)
    return engine
