"""The Python worker: serves `@task` / `@dynamic` functions over `WorkerService.Session`.

Threads of one connection:

- the caller's thread reads the response stream (welcome, assignments, cancellations) and hands
  assignments to a pool of `slots` threads;
- the pool threads run `_runtime.execute` and put each `TaskResult` on a queue;
- gRPC's request thread consumes `_Connection.requests`, a generator that blocks on that queue,
  drains everything finished since the last message into one `ResultBatch`, sends captured
  output as `LogBatch`es every ~200 ms (and before the results it belongs to), and heartbeats
  every interval, listing the assignments still running. Results therefore leave as soon as
  one is ready, and batch by themselves when many finish while the previous message is being
  written.

Each attempt's inputs that arrive offloaded (larger than the engine's inline limit) are read
through `DataService` before the task runs, and outputs over the limit are uploaded there: a
worker never needs the engine's disk. The task's stdout, stderr and `logging` records are
captured (`plait._capture`, as the embedded engine does) and sent with the attempt.

Delivery is at least once: a lost connection's running tasks are retried by the engine, so
their late results are dropped here rather than sent on a new session.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import queue
import random
import signal
import socket
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from plaitidl.core.v1 import errors_pb2, identifier_pb2, literals_pb2, tasks_pb2
from plaitidl.service.v1 import registry_service_pb2, registry_service_pb2_grpc
from plaitidl.service.v1 import worker_service_pb2 as ws
from plaitidl.service.v1 import worker_service_pb2_grpc as ws_grpc

from plait import _loader, _runtime, _serialize
from plait._attempt import Attempt
from plait._channels import Endpoint, message_options
from plait._constants import DEFAULT_QUEUE, LANGUAGE, MAX_MESSAGE_BYTES, SDK_VERSION
from plait._data import INLINE_LIMIT, DataClient
from plait._errors import PlaitValueError, RpcError, WorkerError
from plait._launch_plan import LaunchPlan
from plait._plugins import PluginHost
from plait._task import Task
from plait._workflow import Workflow

log = logging.getLogger("plait.worker")

_SYSTEM = errors_pb2.ExecutionError.KIND_SYSTEM
_LOG_EVERY = 0.2
_LOG_MESSAGE_BYTES = 1 << 20
# Data errors another attempt may not hit (the engine restarting, a broken stream).
_TRANSIENT = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN", "RESOURCE_EXHAUSTED"}
_BACKOFF_START = 0.2
_BACKOFF_MAX = 5.0
# Status codes that another attempt cannot fix: stop instead of reconnecting forever.
_FATAL = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED,
}


def discover(modules: Sequence[types.ModuleType]) -> list[Any]:
    """The tasks, workflows and launch plans that are module-level attributes of `modules`.

    Returns:
        Each entity once, in module then attribute order.
    """
    found: dict[int, Any] = {}
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, Task | Workflow | LaunchPlan):
                found.setdefault(id(value), value)
    return list(found.values())


def _wake_sentinel() -> None:
    """Queued to wake the request generator without a result."""


_WAKE = _wake_sentinel


def _to_result(a: ws.Assignment, outcome: _runtime.Result, started_ns: int) -> ws.TaskResult:
    r = ws.TaskResult(assignment_id=a.assignment_id, attempt=a.attempt)
    r.started_at.FromNanoseconds(started_ns)
    if isinstance(outcome, literals_pb2.LiteralMap):
        r.outputs.CopyFrom(outcome)
    elif isinstance(outcome, errors_pb2.ExecutionError):
        r.error.CopyFrom(outcome)
    else:
        r.dynamic_job_spec.CopyFrom(outcome)
    return r


def _data_error(what: str, exc: RpcError) -> errors_pb2.ExecutionError:
    recoverable = exc.code in _TRANSIENT
    return errors_pb2.ExecutionError(
        code="DataUnavailable" if recoverable else "DataError",
        message=f"{what}: {exc}",
        kind=_SYSTEM,
        recoverable=recoverable,
    )


def _system_error(code: str, exc: BaseException) -> errors_pb2.ExecutionError:
    return errors_pb2.ExecutionError(
        code=code, message=f"{type(exc).__name__}: {exc}", kind=_SYSTEM, recoverable=True
    )


@dataclasses.dataclass(frozen=True)
class _Settings:
    """What every connection of a worker shares."""

    hello: ws.Hello
    pool: concurrent.futures.ThreadPoolExecutor
    stop: threading.Event
    metadata: tuple[tuple[str, str], ...]
    grace: float
    address: str
    data: DataClient
    inline_limit: int
    host: PluginHost


class _Connection:
    """One session with the engine; `run` returns when the stream ends."""

    def __init__(self, channel: grpc.Channel, settings: _Settings) -> None:
        self._stub = ws_grpc.WorkerServiceStub(channel)
        self._settings = settings
        self._hello = settings.hello
        self._pool = settings.pool
        self._stop = settings.stop
        self._data = settings.data
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._cancelled: set[str] = set()
        self._templates: dict[str, Any] = {}
        self._out: queue.Queue[ws.TaskResult | Any] = queue.Queue()
        self._log_lock = threading.Lock()
        self._logs: list[ws.LogChunk] = []
        self._closed = False
        self._heartbeat = 2.0
        self._call: Any = None
        self.welcomed = False

    # -- requests (gRPC's request thread) --------------------------------------------------
    def requests(self) -> Iterator[ws.SessionRequest]:
        """Hello, then results as they finish, logs every ~200 ms and heartbeats in between."""
        yield ws.SessionRequest(hello=self._hello)
        last_heartbeat = last_logs = time.monotonic()
        drain_until: float | None = None
        while not self._closed:
            if drain_until is None and self._stop.is_set():
                drain_until = time.monotonic() + self._settings.grace
            now = time.monotonic()
            wait = max(0.0, min(last_heartbeat + self._heartbeat, last_logs + _LOG_EVERY) - now)
            # Poll the stop flag often: it may be set by a signal handler or another thread.
            try:
                item = self._out.get(timeout=min(wait, 0.1))
            except queue.Empty:
                item = None
            if self._closed:
                return
            yield from self._results(item)
            if time.monotonic() - last_logs >= _LOG_EVERY:
                yield from self._log_messages()
                last_logs = time.monotonic()
            if drain_until is not None:
                with self._lock:
                    idle = not self._running
                if idle or time.monotonic() >= drain_until:
                    yield from self._log_messages()
                    # Half-close: the engine ends the session and requeues what is left.
                    self._cancel_later(2.0)
                    return
            if time.monotonic() - last_heartbeat >= self._heartbeat:
                with self._lock:
                    running = list(self._running)
                # A result is queued before its assignment leaves `_running`: send what was
                # queued meanwhile first, or the engine would see it missing and take it back.
                yield from self._results(None)
                yield ws.SessionRequest(heartbeat=ws.Heartbeat(running_assignment_ids=running))
                last_heartbeat = time.monotonic()

    def _results(self, first: object) -> Iterator[ws.SessionRequest]:
        """`first` and every result queued since, in one message, after their logs."""
        batch: list[ws.TaskResult] = [first] if isinstance(first, ws.TaskResult) else []
        while True:
            try:
                more = self._out.get_nowait()
            except queue.Empty:
                break
            if isinstance(more, ws.TaskResult):
                batch.append(more)
        if batch:
            yield from self._log_messages()
            yield ws.SessionRequest(results=ws.ResultBatch(results=batch))

    def _log_messages(self) -> Iterator[ws.SessionRequest]:
        """The captured output queued so far, in messages of at most ~1 MiB."""
        with self._log_lock:
            chunks, self._logs = self._logs, []
        batch: list[ws.LogChunk] = []
        size = 0
        for c in chunks:
            n = c.ByteSize()
            if batch and size + n > _LOG_MESSAGE_BYTES:
                yield ws.SessionRequest(logs=ws.LogBatch(chunks=batch))
                batch, size = [], 0
            batch.append(c)
            size += n
        if batch:
            yield ws.SessionRequest(logs=ws.LogBatch(chunks=batch))

    def _cancel_later(self, delay: float) -> None:
        # Should the engine not end the stream after our half-close, do not hang on it.
        call = self._call
        if call is not None:
            t = threading.Timer(delay, call.cancel)
            t.daemon = True
            t.start()

    # -- responses (the caller's thread) ---------------------------------------------------
    def run(self) -> None:
        """Open the stream and serve it until it ends.

        Raises:
            grpc.RpcError: The stream failed (engine unavailable, refused hello, ...).
        """
        self._call = self._stub.Session(self.requests(), metadata=self._settings.metadata)
        try:
            for response in self._call:
                which = response.WhichOneof("message")
                if which == "assignments":
                    self._on_assignments(response.assignments.assignments)
                elif which == "cancellations":
                    with self._lock:
                        for aid in response.cancellations.assignment_ids:
                            if aid in self._running:
                                self._cancelled.add(aid)
                                self._settings.host.cancel(aid)  # plugins can stop
                elif which == "welcome":
                    self._on_welcome(response.welcome)
        finally:
            self._closed = True
            self._out.put(_WAKE)

    def _on_welcome(self, welcome: ws.Welcome) -> None:
        self.welcomed = True
        interval = welcome.heartbeat_interval.ToNanoseconds() / 1e9
        if interval > 0:
            self._heartbeat = interval
        log.info(
            "worker %s connected to %s: session %s, queues %s, %d slots",
            self._hello.worker_id, self._settings.address, welcome.session_id,
            ",".join(self._hello.queues), self._hello.slots,
        )  # fmt: skip

    def _on_assignments(self, assignments: Sequence[ws.Assignment]) -> None:
        with self._lock:
            for a in assignments:
                self._running[a.assignment_id] = a.attempt
        for a in assignments:
            if a.HasField("task_template"):
                self._templates[a.template_key] = a.task_template
            self._pool.submit(self._run_one, a)

    # -- tasks (pool threads) ----------------------------------------------------------------
    def _run_one(self, a: ws.Assignment) -> None:
        aid = a.assignment_id
        with self._lock:
            skip = self._closed or self._stop.is_set() or aid in self._cancelled
            if skip:
                # Not started: a cancelled one needs no answer, and the engine retries the
                # rest of a closing session elsewhere.
                self._running.pop(aid, None)
                self._cancelled.discard(aid)
        if skip:
            self._out.put(_WAKE)
            return
        started_ns = time.time_ns()
        template = self._templates.get(a.template_key)
        outcome: _runtime.Result
        if template is None:
            outcome = errors_pb2.ExecutionError(
                code="UnknownTemplate",
                message=f"assignment {aid} names template {a.template_key!r}, which this "
                "session never received",
                kind=_SYSTEM,
                recoverable=True,
            )
        else:
            try:
                outcome = self._attempt(a, template)
            except BaseException as exc:  # the runtime itself broke: not the task's fault
                outcome = _system_error("WorkerError", exc)
        result = _to_result(a, outcome, started_ns)
        with self._lock:
            if aid in self._cancelled:
                # Python code cannot be interrupted: it ran to the end, its result is unwanted.
                self._cancelled.discard(aid)
                self._running.pop(aid, None)
                self._out.put(_WAKE)
                return
        if not self._closed:
            self._out.put(result)
        # Only now: a heartbeat that no longer lists it is sent after the result.
        with self._lock:
            self._running.pop(aid, None)

    def _attempt(self, a: ws.Assignment, template: tasks_pb2.TaskTemplate) -> _runtime.Result:
        """Read offloaded inputs, run the task capturing its output, upload large outputs."""
        try:
            inputs = self._data.resolve_map(a.inputs)
        except RpcError as exc:
            return _data_error("reading an offloaded input failed", exc)
        attempt = Attempt.of(a.task_execution_id, self._log_sink(a))
        deadline = a.deadline.ToNanoseconds() / 1e9 if a.HasField("deadline") else None
        outcome = self._settings.host.run(a.assignment_id, template, inputs, attempt, deadline)
        if not isinstance(outcome, literals_pb2.LiteralMap):
            return outcome
        types = {v.name: v.type for v in template.interface.outputs.variables}
        execution = a.task_execution_id.node_execution_id.execution_id
        try:
            return self._data.offload_map(execution, outcome, types, self._settings.inline_limit)
        except RpcError as exc:
            return _data_error("uploading a large output failed", exc)

    def _log_sink(self, a: ws.Assignment) -> Callable[[int, str], None]:
        def sink(stream: int, text: str) -> None:
            chunk = ws.LogChunk(
                assignment_id=a.assignment_id,
                attempt=a.attempt,
                stream=stream,  # type: ignore[arg-type]
                text=text,
            )
            chunk.time.FromNanoseconds(time.time_ns())
            with self._log_lock:
                self._logs.append(chunk)

        return sink


def _register(
    stub: registry_service_pb2_grpc.RegistryServiceStub,
    request: registry_service_pb2.RegisterRequest,
    metadata: Sequence[tuple[str, str]],
    stop: threading.Event,
    address: str,
) -> bool:
    delay = _BACKOFF_START
    while not stop.is_set():
        try:
            response = stub.Register(request, metadata=tuple(metadata), timeout=30)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code in _FATAL or code == grpc.StatusCode.FAILED_PRECONDITION:
                details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
                raise WorkerError(f"registration refused: {details}", code) from exc
            log.debug("registration at %s failed (%s); retrying", address, code)
            stop.wait(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _BACKOFF_MAX)
            continue
        log.info(
            "registered %d new and %d unchanged template(s) at %s",
            len(response.created), len(response.unchanged), address,
        )  # fmt: skip
        return True
    return False


def _install_signals(stop: threading.Event) -> list[tuple[int, Any]]:
    if threading.current_thread() is not threading.main_thread():
        return []
    previous: list[tuple[int, Any]] = []

    def handler(signum: int, frame: types.FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous.append((sig, signal.signal(sig, handler)))
    return previous


def _hello(
    tasks: Sequence[tasks_pb2.TaskTemplate],
    slots: int,
    queues: Sequence[str] | None,
    worker_id: str | None,
    task_types: Sequence[str] = (),
) -> ws.Hello:
    served = list(queues) if queues else sorted({t.worker.queue for t in tasks if t.worker.queue})
    # The versions this code computes for its tasks, without project and domain: the same code
    # serves them whichever project registered them.
    declared = [identifier_pb2.Identifier(name=t.id.name, version=t.id.version) for t in tasks]
    return ws.Hello(
        worker_id=worker_id or f"{socket.gethostname()}-{os.getpid()}",
        queues=served or [DEFAULT_QUEUE],
        slots=slots,
        language=LANGUAGE,
        version=SDK_VERSION,
        tasks=declared,
        task_types=list(task_types),
    )


# Keyword-only options, one per `plait worker` flag: the documented exception to the
# argument-count rule, as for @task.
def run_worker(  # noqa: PLR0913
    engine: str | Endpoint,
    paths: Sequence[str],
    *,
    slots: int = 16,
    queues: Sequence[str] | None = None,
    worker_id: str | None = None,
    register: bool = True,
    stop: threading.Event | None = None,
    grace: float = 5.0,
    secrets_dir: Path | None = None,
) -> None:
    """Serve the tasks of some Python files or modules until stopped.

    Imports each path, optionally registers the tasks, workflows and launch plans found there,
    and then keeps one session open with the engine, reconnecting with exponential backoff
    (0.2 s doubling to 5 s, with jitter) whenever it goes away. The worker tells the engine the
    versions of the tasks it loaded (their code digests): the engine sends it only those, so
    an execution that needs other code waits for a worker that has it instead of running stale
    code here.

    Args:
        engine: The engine's ``host:port``, or an `Endpoint` with its token and TLS settings.
        paths: ``.py`` files or dotted module names holding the tasks.
        slots: Tasks run at once (threads; 16 by default, like `plait worker`).
        queues: Queues served; by default the queues of the tasks found (or ``"default"``).
        worker_id: The worker's id; ``"<hostname>-<pid>"`` by default.
        register: Whether to register what the paths define before serving.
        stop: Set it to stop; SIGTERM and SIGINT set it too when called on the main thread.
        grace: On stop, how long running tasks may still finish and report (seconds).
        secrets_dir: A folder of secret files (one per secret, named like it) for the tasks
            that name secrets; then ``PLAIT_SECRET_<NAME>`` environment variables.

    Raises:
        PlaitValueError: Bad arguments.
        WorkerError: The engine refused the registration or the session.
    """
    if slots < 1:
        raise PlaitValueError(f"slots must be at least 1, not {slots}")
    endpoint = Endpoint(engine) if isinstance(engine, str) else engine
    entities = discover([_loader.load_path(p) for p in paths])
    ts, wfs, lps = _serialize.closure(entities) if entities else ([], [], [])
    # Plugins load here, when the worker starts: never on import.
    host = PluginHost.load(secrets_dir)
    hello = _hello(ts, slots, queues, worker_id, host.task_types)
    stop = stop or threading.Event()
    previous = _install_signals(stop)
    channel = endpoint.channel(message_options(MAX_MESSAGE_BYTES))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=slots, thread_name_prefix="plait-task")
    settings = _Settings(
        hello=hello,
        pool=pool,
        stop=stop,
        metadata=tuple(endpoint.metadata),
        grace=grace,
        address=endpoint.address,
        data=DataClient(channel, endpoint.metadata),
        inline_limit=INLINE_LIMIT,
        host=host,
    )
    try:
        if register and entities:
            request = registry_service_pb2.RegisterRequest(
                tasks=ts, workflows=wfs, launch_plans=lps
            )
            stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
            if not _register(stub, request, settings.metadata, stop, settings.address):
                return
        _serve(channel, settings)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        channel.close()
        for sig, handler in previous:
            signal.signal(sig, handler)


def _serve(channel: grpc.Channel, settings: _Settings) -> None:
    hello, stop, address = settings.hello, settings.stop, settings.address
    delay = _BACKOFF_START
    while not stop.is_set():
        conn = _Connection(channel, settings)
        try:
            conn.run()
            reason = "the engine ended the session"
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            if code in _FATAL:
                raise WorkerError(f"the engine refused the worker: {details}", code) from exc
            reason = f"{code.name if code else 'error'}: {details}"
        if stop.is_set():
            break
        if conn.welcomed:
            log.warning("worker %s lost its session (%s); reconnecting", hello.worker_id, reason)
            delay = _BACKOFF_START
        else:
            log.debug("worker %s cannot connect to %s (%s)", hello.worker_id, address, reason)
        stop.wait(delay * random.uniform(0.5, 1.0))
        delay = min(delay * 2, _BACKOFF_MAX)
    log.info("worker %s stopped", hello.worker_id)


__all__ = ["WorkerError", "discover", "run_worker"]
