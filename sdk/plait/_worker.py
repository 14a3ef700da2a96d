"""The Python worker: serves `@task` / `@dynamic` functions over `WorkerService.Session`.

Threads of one connection:

- the caller's thread reads the response stream (welcome, assignments, cancellations) and hands
  assignments to a pool of `slots` threads;
- the pool threads run `_runtime.execute` and put each `TaskResult` on a queue;
- gRPC's request thread consumes `_Connection.requests`, a generator that blocks on that queue,
  drains everything finished since the last message into one `ResultBatch`, and heartbeats
  when nothing else was sent for an interval. Results therefore leave as soon as one is ready,
  and batch by themselves when many finish while the previous message is being written.

Delivery is at least once: a lost connection's running tasks are retried by the engine, so
their late results are dropped here rather than sent on a new session.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import random
import signal
import socket
import threading
import time
import types
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
from plaitidl.core.v1 import errors_pb2, literals_pb2
from plaitidl.service.v1 import registry_service_pb2, registry_service_pb2_grpc
from plaitidl.service.v1 import worker_service_pb2 as ws
from plaitidl.service.v1 import worker_service_pb2_grpc as ws_grpc

from plait import _loader, _runtime, _serialize
from plait._attempt import Attempt
from plait._channels import Endpoint, message_options
from plait._constants import DEFAULT_QUEUE, LANGUAGE, MAX_MESSAGE_BYTES, SDK_VERSION
from plait._errors import PlaitValueError, WorkerError
from plait._launch_plan import LaunchPlan
from plait._task import Task
from plait._workflow import Workflow

log = logging.getLogger("plait.worker")

_SYSTEM = errors_pb2.ExecutionError.KIND_SYSTEM
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


class _Connection:
    """One session with the engine; `run` returns when the stream ends."""

    def __init__(
        self,
        channel: grpc.Channel,
        hello: ws.Hello,
        pool: concurrent.futures.ThreadPoolExecutor,
        stop: threading.Event,
        metadata: Sequence[tuple[str, str]],
        grace: float,
        address: str,
    ) -> None:
        self._stub = ws_grpc.WorkerServiceStub(channel)
        self._hello = hello
        self._pool = pool
        self._stop = stop
        self._metadata = tuple(metadata)
        self._grace = grace
        self._address = address
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._cancelled: set[str] = set()
        self._templates: dict[str, Any] = {}
        self._out: queue.Queue[ws.TaskResult | Any] = queue.Queue()
        self._closed = False
        self._heartbeat = 2.0
        self._call: Any = None
        self.welcomed = False

    # -- requests (gRPC's request thread) --------------------------------------------------
    def requests(self) -> Iterator[ws.SessionRequest]:
        """Hello, then result batches as they finish and heartbeats in between."""
        yield ws.SessionRequest(hello=self._hello)
        last_sent = time.monotonic()
        drain_until: float | None = None
        while not self._closed:
            if drain_until is None and self._stop.is_set():
                drain_until = time.monotonic() + self._grace
            wait = max(0.0, last_sent + self._heartbeat - time.monotonic())
            # Poll the stop flag often: it may be set by a signal handler or another thread.
            try:
                item = self._out.get(timeout=min(wait, 0.1))
            except queue.Empty:
                item = None
            if self._closed:
                return
            batch: list[ws.TaskResult] = []
            if isinstance(item, ws.TaskResult):
                batch.append(item)
            while True:
                try:
                    more = self._out.get_nowait()
                except queue.Empty:
                    break
                if isinstance(more, ws.TaskResult):
                    batch.append(more)
            if batch:
                yield ws.SessionRequest(results=ws.ResultBatch(results=batch))
                last_sent = time.monotonic()
            if drain_until is not None:
                with self._lock:
                    idle = not self._running
                if idle or time.monotonic() >= drain_until:
                    # Half-close: the engine ends the session and requeues what is left.
                    self._cancel_later(2.0)
                    return
            if time.monotonic() - last_sent >= self._heartbeat:
                with self._lock:
                    running = list(self._running)
                yield ws.SessionRequest(heartbeat=ws.Heartbeat(running_assignment_ids=running))
                last_sent = time.monotonic()

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
        self._call = self._stub.Session(self.requests(), metadata=self._metadata)
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
            self._hello.worker_id, self._address, welcome.session_id,
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
                outcome = _runtime.execute(
                    template, a.inputs, Attempt.of(a.task_execution_id, None)
                )
            except BaseException as exc:  # the runtime itself broke: not the task's fault
                outcome = errors_pb2.ExecutionError(
                    code="WorkerError",
                    message=f"{type(exc).__name__}: {exc}",
                    kind=_SYSTEM,
                    recoverable=True,
                )
        result = _to_result(a, outcome, started_ns)
        with self._lock:
            self._running.pop(aid, None)
            if aid in self._cancelled:
                # Python code cannot be interrupted: it ran to the end, its result is unwanted.
                self._cancelled.discard(aid)
                self._out.put(_WAKE)
                return
        if not self._closed:
            self._out.put(result)


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
    entities: Sequence[Any], slots: int, queues: Sequence[str] | None, worker_id: str | None
) -> ws.Hello:
    tasks = [e for e in entities if isinstance(e, Task)]
    served = list(queues) if queues else sorted({t.template.worker.queue for t in tasks})
    return ws.Hello(
        worker_id=worker_id or f"{socket.gethostname()}-{os.getpid()}",
        queues=served or [DEFAULT_QUEUE],
        slots=slots,
        language=LANGUAGE,
        version=SDK_VERSION,
    )


def run_worker(
    engine: str | Endpoint,
    paths: Sequence[str],
    *,
    slots: int = 4,
    queues: Sequence[str] | None = None,
    worker_id: str | None = None,
    register: bool = True,
    stop: threading.Event | None = None,
    grace: float = 5.0,
) -> None:
    """Serve the tasks of some Python files or modules until stopped.

    Imports each path, optionally registers the tasks, workflows and launch plans found there,
    and then keeps one session open with the engine, reconnecting with exponential backoff
    (0.2 s doubling to 5 s, with jitter) whenever it goes away.

    Args:
        engine: The engine's ``host:port``, or an `Endpoint` with its token and TLS settings.
        paths: ``.py`` files or dotted module names holding the tasks.
        slots: Tasks run at once (threads).
        queues: Queues served; by default the queues of the tasks found (or ``"default"``).
        worker_id: The worker's id; ``"<hostname>-<pid>"`` by default.
        register: Whether to register what the paths define before serving.
        stop: Set it to stop; SIGTERM and SIGINT set it too when called on the main thread.
        grace: On stop, how long running tasks may still finish and report (seconds).

    Raises:
        PlaitValueError: Bad arguments.
        WorkerError: The engine refused the registration or the session.
    """
    if slots < 1:
        raise PlaitValueError(f"slots must be at least 1, not {slots}")
    endpoint = Endpoint(engine) if isinstance(engine, str) else engine
    entities = discover([_loader.load_path(p) for p in paths])
    hello = _hello(entities, slots, queues, worker_id)
    metadata = list(endpoint.metadata)
    stop = stop or threading.Event()
    previous = _install_signals(stop)
    channel = endpoint.channel(message_options(MAX_MESSAGE_BYTES))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=slots, thread_name_prefix="plait-task")
    address = endpoint.address
    try:
        if register and entities:
            ts, wfs, lps = _serialize.closure(entities)
            request = registry_service_pb2.RegisterRequest(
                tasks=ts, workflows=wfs, launch_plans=lps
            )
            stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
            if not _register(stub, request, metadata, stop, address):
                return
        _serve(channel, hello, pool, stop, metadata, grace, address)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        channel.close()
        for sig, handler in previous:
            signal.signal(sig, handler)


def _serve(
    channel: grpc.Channel,
    hello: ws.Hello,
    pool: concurrent.futures.ThreadPoolExecutor,
    stop: threading.Event,
    metadata: Sequence[tuple[str, str]],
    grace: float,
    address: str,
) -> None:
    delay = _BACKOFF_START
    while not stop.is_set():
        conn = _Connection(channel, hello, pool, stop, metadata, grace, address)
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
