"""Structure-aware fuzzing of a running server: mutated registrations, execution requests and
worker results get a clear answer (never INTERNAL or UNKNOWN), and the server keeps serving the
other executions: a canary workflow on a real worker runs before, during and after."""

from __future__ import annotations

import collections
import queue
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plait import Client, _serialize
from plaitidl.core.v1 import dynamic_job_pb2, errors_pb2, literals_pb2
from plaitidl.service.v1 import execution_service_pb2 as es
from plaitidl.service.v1 import execution_service_pb2_grpc as es_grpc
from plaitidl.service.v1 import registry_service_pb2 as rs
from plaitidl.service.v1 import registry_service_pb2_grpc as rs_grpc
from plaitidl.service.v1 import worker_service_pb2 as ws
from plaitidl.service.v1 import worker_service_pb2_grpc as ws_grpc

from tests.support.servers import ROOT, EngineProcess, start_engine, start_worker
from tests.unit.test_compiler_fuzz import HOSTILE, _messages, _mutate
from tests.workflows import behaviours as b
from tests.workflows import fuzz_target

_load = __import__("plait._loader", fromlist=["load_path"]).load_path
merge_sort = _load(str(ROOT / "examples" / "merge_sort.py"))
generate_others = _load(str(ROOT / "examples" / "generate_others.py"))

CLEAR = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
}
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
COUNTS: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    tmp = tmp_path_factory.mktemp("fuzz")
    engine = start_engine(tmp, "--max-message-bytes", str(8 << 20))
    worker = start_worker(engine.address, "tests/workflows/behaviours.py", log=tmp / "worker.log")
    try:
        yield engine
    finally:
        worker.kill()
        worker.wait(10)
        engine.kill()
    print("fuzz counts:", {k: dict(v) for k, v in COUNTS.items()})


def _code(call: Any) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as err:
        assert isinstance(err, grpc.Call)
        return err.code()
    return grpc.StatusCode.OK


def _canary(engine: EngineProcess) -> None:
    with Client(engine.address) as client:
        assert client.wait(client.execute(b.branch_wf, {"x": 7}), timeout=60) == 49


def _deep_literal(depth: int) -> literals_pb2.Literal:
    lit = literals_pb2.Literal()
    lit.scalar.primitive.integer = 1
    for _ in range(depth):
        outer = literals_pb2.Literal()
        outer.collection.literals.add().CopyFrom(lit)
        lit = outer
    return lit


def _register_request(rng: random.Random) -> rs.RegisterRequest:
    entity = rng.choice([merge_sort.merge_sort, generate_others.fan_out, b.branch_wf, b.map_wf])
    bundle = _serialize.collect(entity)
    request = bundle.register_request()
    # In a project of their own: an accepted mutant never clashes with the canary's templates.
    found: list[Any] = []
    _messages(request, found)
    for m in found:
        if m.DESCRIPTOR.full_name == "plaitidl.core.v1.Identifier":
            m.project = "fuzz"
    for _ in range(rng.randint(1, 6)):
        _mutate(rng, request)
    if rng.random() < 0.2 and request.workflows and request.workflows[0].nodes:
        request.workflows[0].nodes[0].id = rng.choice(HOSTILE)
    return request


@given(st.randoms(use_true_random=False))
@FUZZ
def test_mutated_registrations_get_clear_answers(server: EngineProcess, rnd: random.Random) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = rs_grpc.RegistryServiceStub(channel)
        code = _code(lambda: stub.Register(_register_request(rnd), timeout=30))
    COUNTS["register"][code.name] += 1
    assert code in CLEAR, code


def _create_request(rng: random.Random, known: es.CreateExecutionRequest) -> Any:
    request = es.CreateExecutionRequest()
    request.CopyFrom(known)
    request.request_id = ""
    choice = rng.randrange(6)
    if choice == 0:
        request.inputs.literals["x"].CopyFrom(_deep_literal(rng.choice([5, 30, 95])))
    elif choice == 1:
        request.inputs.literals["x"].scalar.primitive.string_value = "s" * rng.choice(
            [10, 300_000, 3_000_000]
        )
    elif choice == 2:
        request.name = rng.choice(HOSTILE)
    elif choice == 3:
        request.labels[rng.choice(HOSTILE)[:100] or "k"] = rng.choice(["v", "v" * 5000])
    elif choice == 4:
        request.workflow_id.name = rng.choice(HOSTILE)
    else:
        _mutate(rng, request)
    return request


@given(st.randoms(use_true_random=False))
@FUZZ
def test_mutated_execution_requests_get_clear_answers(
    server: EngineProcess, rnd: random.Random
) -> None:
    with Client(server.address) as client:
        bundle = _serialize.collect(b.branch_wf)
        client.register_templates(bundle.register_request())
    known = es.CreateExecutionRequest(workflow_id=bundle.root)
    known.inputs.literals["x"].scalar.primitive.integer = 3
    with grpc.insecure_channel(server.address) as channel:
        stub = es_grpc.ExecutionServiceStub(channel)
        request = _create_request(rnd, known)
        code = _code(lambda: stub.CreateExecution(request, timeout=30))
    COUNTS["create_execution"][code.name] += 1
    assert code in CLEAR, code


class _RawWorker:
    """A worker speaking the session protocol by hand, answering with fuzzed results."""

    def __init__(self, address: str, queue_name: str) -> None:
        self._out: queue.Queue[ws.SessionRequest | None] = queue.Queue()
        self._channel = grpc.insecure_channel(address)
        hello = ws.Hello(worker_id="fuzzer", queues=[queue_name], slots=4, language="test")
        self._out.put(ws.SessionRequest(hello=hello))
        self.assignments: queue.Queue[ws.Assignment] = queue.Queue()
        self._stream = ws_grpc.WorkerServiceStub(self._channel).Session(self._requests())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _requests(self) -> Iterator[ws.SessionRequest]:
        while (item := self._out.get()) is not None:
            yield item

    def _read(self) -> None:
        try:
            for response in self._stream:
                for a in response.assignments.assignments:
                    self.assignments.put(a)
        except grpc.RpcError:
            pass

    def send(self, request: ws.SessionRequest) -> None:
        self._out.put(request)

    def close(self) -> None:
        self._out.put(None)
        self._channel.close()


def _fuzzed_result(rng: random.Random, a: ws.Assignment) -> ws.TaskResult:
    result = ws.TaskResult(assignment_id=a.assignment_id, attempt=a.attempt)
    choice = rng.randrange(6)
    if choice == 0:
        result.outputs.literals["o0"].scalar.primitive.integer = 1  # fits: succeeds
    elif choice == 1:
        result.outputs.literals["o0"].CopyFrom(_deep_literal(rng.choice([30, 40])))
    elif choice == 2:
        result.outputs.literals["nope"].scalar.primitive.string_value = "x"
    elif choice == 3:
        spec = dynamic_job_pb2.DynamicJobSpec()
        spec.nodes.add(id=rng.choice(HOSTILE)).task_node.task_id.name = rng.choice(HOSTILE)
        result.dynamic_job_spec.CopyFrom(spec)
    elif choice == 4:
        result.error.CopyFrom(
            errors_pb2.ExecutionError(code="Fuzz", message="m" * rng.choice([10, 100_000]))
        )
    else:
        result.assignment_id = rng.choice(HOSTILE)  # nobody's assignment
    return result


def test_fuzzed_worker_results_fail_cleanly_and_others_run(server: EngineProcess) -> None:
    """Executions served by a fuzzing worker end (any way); the others keep running."""
    rng = random.Random(7)
    fuzzer = _RawWorker(server.address, "fuzz")
    with Client(server.address) as client:
        runs = [client.execute(fuzz_target.fuzz_target_wf, {"x": i}) for i in range(40)]
        answered = 0
        while answered < 120:
            try:
                a = fuzzer.assignments.get(timeout=5)
            except queue.Empty:
                break
            fuzzer.send(ws.SessionRequest(results=ws.ResultBatch(results=[_fuzzed_result(rng, a)])))
            fuzzer.send(ws.SessionRequest(heartbeat=ws.Heartbeat()))
            answered += 1
            COUNTS["worker_results"]["answered"] += 1
        _canary(server)
        for run in runs:
            client.terminate(run, "fuzzing done")  # any still waiting for the fuzzer
        for run in runs:
            state = client.get(run)
            COUNTS["worker_results"][str(state.phase)] += 1
            assert state.phase in (3, 4, 5), state  # ended: SUCCEEDED, FAILED or ABORTED
    fuzzer.close()
    assert answered >= 40
    _canary(server)


def test_the_server_still_serves_after_all_of_it(server: EngineProcess) -> None:
    _canary(server)
    assert server.proc.poll() is None
    log = Path(server.log).read_text()
    # No execution failed inside the engine, and no handler raised unexpectedly.
    assert "failed inside the engine" not in log
    assert "handler failed" not in log
