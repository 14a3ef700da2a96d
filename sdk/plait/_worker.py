"""The Python worker: serves `@task` / `@dynamic` functions over `WorkerService.Session`.

Threads of one connection:

- the caller's thread reads the response stream (welcome, assignments, cancellations) and hands
  assignments to at most `slots` task threads (`plait._inflight.Slots`);
- the task threads run `_runtime.execute` and leave each `TaskResult` in the session's
  `plait._inflight.Inflight`;
- gRPC's request thread consumes `_Connection.requests`, a generator that takes the results
  from there, coalesced into one `ResultBatch` (a lone result leaves at once; results finishing
  close together leave together, see `plait._inflight`), sends captured output as `LogBatch`es
  every ~200 ms (and before the results it belongs to), and heartbeats every interval, listing
  the assignments still running.

Each attempt's inputs that arrive offloaded (larger than the engine's inline limit) are read
through `DataService` before the task runs, and outputs over the limit are uploaded there: a
worker never needs the engine's disk. The task's stdout, stderr and `logging` records are
captured (`plait._capture`, as the embedded engine does) and sent with the attempt.

Delivery is at least once: a lost connection's running tasks are retried by the engine, so
their late results are dropped here rather than sent on a new session.
"""

from __future__ import annotations

import dataclasses
import logging
import os
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

from plait import _loader, _runtime, _serialize
from plait._attempt import Attempt
from plait._channels import Endpoint, message_options
from plait._constants import DEFAULT_QUEUE, LANGUAGE, MAX_MESSAGE_BYTES, SDK_VERSION
from plait._data import INLINE_LIMIT, DataClient
from plait._dynamic_wire import field, varint
from plait._errors import PlaitValueError, RpcError, WorkerError
from plait._inflight import Inflight, Slots
from plait._launch_plan import LaunchPlan
from plait._plugins import PluginHost
from plait._task import Task
from plait._workflow import Workflow

log = logging.getLogger("plait.worker")

_SYSTEM = errors_pb2.ExecutionError.KIND_SYSTEM
_LOG_EVERY = 0.2
_SESSION_METHOD = "/plaitidl.service.v1.WorkerService/Session"
_LOG_MESSAGE_BYTES = 1 << 20
# Results finishing together share a message up to this size (far below the message limit:
# dynamic specs can be large).
_RESULT_MESSAGE_BYTES = 4 << 20
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


def _encoded_result(a: ws.Assignment, outcome: _runtime.Result, started_ns: int) -> bytes:
    """The `TaskResult` answering `a`, serialized (spliced: building it through the protobuf
    API copies the outcome twice)."""
    if isinstance(outcome, literals_pb2.LiteralMap):
        key = b"\x1a"  # outputs (3)
    elif isinstance(outcome, errors_pb2.ExecutionError):
        key = b"\x2a"  # error (5)
    else:
        key = b"\x22"  # dynamic_job_spec (4)
    seconds, nanos = divmod(started_ns, 1_000_000_000)
    started = (b"\x08" + varint(seconds) if seconds else b"") + (
        b"\x10" + varint(nanos) if nanos else b""
    )
    return b"".join(
        (
            field(b"\x0a", a.assignment_id.encode()) if a.assignment_id else b"",
            b"\x10" + varint(a.attempt) if a.attempt else b"",
            field(key, outcome.SerializeToString()),
            field(b"\x32", started),  # started_at (6)
        )
    )


def _results_messages(results: list[bytes], limit: int = _RESULT_MESSAGE_BYTES) -> Iterator[bytes]:
    """`SessionRequest`s whose `results` (3) carry the serialized `TaskResult`s, each message
    at most about `limit` bytes (a larger result travels alone)."""
    chunk: list[bytes] = []
    size = 0
    for r in results:
        item = field(b"\x0a", r)
        if chunk and size + len(item) > limit:
            yield field(b"\x1a", b"".join(chunk))
            chunk, size = [], 0
        chunk.append(item)
        size += len(item)
    if chunk:
        yield field(b"\x1a", b"".join(chunk))


def _request_bytes(request: ws.SessionRequest | bytes) -> bytes:
    return request if isinstance(request, bytes) else request.SerializeToString()


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
    slots: Slots
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
        # As `WorkerServiceStub.Session`, but result batches go out already serialized.
        self._session = channel.stream_stream(
            _SESSION_METHOD,
            request_serializer=_request_bytes,
            response_deserializer=ws.SessionResponse.FromString,
        )
        self._settings = settings
        self._hello = settings.hello
        self._slots = settings.slots
        self._stop = settings.stop
        self._data = settings.data
        self._inflight = Inflight()
        # Template key -> the template and its output types (derived once per session).
        self._templates: dict[str, tuple[tasks_pb2.TaskTemplate, dict[str, Any]]] = {}
        self._log_lock = threading.Lock()
        self._logs: list[ws.LogChunk] = []
        self._heartbeat = 2.0
        self._call: Any = None
        self.welcomed = False

    # -- requests (gRPC's request thread) --------------------------------------------------
    def requests(self) -> Iterator[ws.SessionRequest | bytes]:
        """Hello, then results as they finish, logs every ~200 ms and heartbeats in between."""
        yield ws.SessionRequest(hello=self._hello)
        inflight = self._inflight
        last_heartbeat = last_logs = time.monotonic()
        drain_until: float | None = None
        while not inflight.closed:
            if drain_until is None and self._stop.is_set():
                drain_until = time.monotonic() + self._settings.grace
            now = time.monotonic()
            wait = max(0.0, min(last_heartbeat + self._heartbeat, last_logs + _LOG_EVERY) - now)
            # Poll the stop flag often: it may be set by a signal handler or another thread.
            results = inflight.take(min(wait, 0.1))
            if inflight.closed:
                return
            yield from self._results(results)
            if time.monotonic() - last_logs >= _LOG_EVERY:
                yield from self._log_messages()
                last_logs = time.monotonic()
            if drain_until is not None and (inflight.idle() or time.monotonic() >= drain_until):
                results, _ = inflight.take_for_heartbeat()
                yield from self._results(results)
                yield from self._log_messages()
                # Half-close: the engine ends the session and requeues what is left.
                self._cancel_later(2.0)
                return
            if time.monotonic() - last_heartbeat >= self._heartbeat:
                # The results first: an assignment is either answered or listed as running.
                results, running = inflight.take_for_heartbeat()
                yield from self._results(results)
                yield ws.SessionRequest(heartbeat=ws.Heartbeat(running_assignment_ids=running))
                last_heartbeat = time.monotonic()

    def _results(self, batch: list[bytes]) -> Iterator[ws.SessionRequest | bytes]:
        """`batch` in one message, after the captured output it belongs after."""
        if batch:
            yield from self._log_messages()
            yield from _results_messages(batch)

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
        self._call = self._session(self.requests(), metadata=self._settings.metadata)
        try:
            for response in self._call:
                which = response.WhichOneof("message")
                if which == "assignments":
                    self._on_assignments(response.assignments.assignments)
                elif which == "cancellations":
                    for aid in self._inflight.cancel(response.cancellations.assignment_ids):
                        self._settings.host.cancel(aid)  # plugins can stop
                elif which == "welcome":
                    self._on_welcome(response.welcome)
        finally:
            self._inflight.close()

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
        self._inflight.received(a.assignment_id for a in assignments)
        for a in assignments:
            if a.HasField("task_template"):
                t = a.task_template
                types = {v.name: v.type for v in t.interface.outputs.variables}
                self._templates[a.template_key] = (t, types)
            self._slots.submit(self._run_one, a)

    # -- tasks (task threads) ----------------------------------------------------------------
    def _run_one(self, a: ws.Assignment) -> None:
        aid = a.assignment_id
        # Not started when withdrawn or when the worker stops: a cancelled one needs no answer,
        # and the engine retries the rest of a closing session elsewhere.
        if not self._inflight.start(aid, skip=self._stop.is_set()):
            return
        started_ns = time.time_ns()
        known = self._templates.get(a.template_key)
        outcome: _runtime.Result
        if known is None:
            outcome = errors_pb2.ExecutionError(
                code="UnknownTemplate",
                message=f"assignment {aid} names template {a.template_key!r}, which this "
                "session never received",
                kind=_SYSTEM,
                recoverable=True,
            )
        else:
            try:
                outcome = self._attempt(a, *known)
            except BaseException as exc:  # the runtime itself broke: not the task's fault
                outcome = _system_error("WorkerError", exc)
        self._inflight.finish(aid, _encoded_result(a, outcome, started_ns))

    def _attempt(
        self, a: ws.Assignment, template: tasks_pb2.TaskTemplate, types: dict[str, Any]
    ) -> _runtime.Result:
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
    task_threads = Slots(slots)
    settings = _Settings(
        hello=hello,
        slots=task_threads,
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
        task_threads.close()
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
