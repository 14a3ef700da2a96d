"""Scoped tokens against a real `plait serve --token-file`: roles, projects, worker sessions,
and tokens kept out of the log."""

from __future__ import annotations

import hashlib
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from plaitidl.core.v1 import execution_pb2, identifier_pb2, interface_pb2, tasks_pb2, workflow_pb2
from plaitidl.service.v1 import execution_service_pb2 as es
from plaitidl.service.v1 import execution_service_pb2_grpc as es_grpc
from plaitidl.service.v1 import registry_service_pb2 as rs
from plaitidl.service.v1 import registry_service_pb2_grpc as rs_grpc
from plaitidl.service.v1 import worker_service_pb2 as ws
from plaitidl.service.v1 import worker_service_pb2_grpc as ws_grpc

from tests.support.servers import ROOT, EngineProcess, plait_command, start_engine

TOKENS = {
    "admin": "admin-secret-token-0001",
    "client-a": "client-secret-token-alpha",
    "client-ab": "client-secret-token-both",
    "worker-a": "worker-secret-token-alpha",
    "worker-b": "worker-secret-token-beta",
}
HASHED = "hashed-client-secret-beta"  # given to the engine only as its SHA-256
TOKEN_FILE = f"""
[[tokens]]
name = "admin"
token = "{TOKENS["admin"]}"
role = "admin"
projects = ["*"]

[[tokens]]
name = "client-a"
token = "{TOKENS["client-a"]}"
role = "client"
projects = ["alpha"]

[[tokens]]
name = "client-ab"
token = "{TOKENS["client-ab"]}"
role = "client"
projects = ["alpha", "beta"]

[[tokens]]
name = "worker-a"
token = "{TOKENS["worker-a"]}"
role = "worker"
projects = ["alpha"]

[[tokens]]
name = "worker-b"
token = "{TOKENS["worker-b"]}"
role = "worker"
projects = ["beta"]

[[tokens]]
name = "hashed-b"
token_sha256 = "{hashlib.sha256(HASHED.encode()).hexdigest()}"
role = "client"
projects = ["beta"]
"""
EP = execution_pb2
QUEUE = "auth-q"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    """`plait serve --token-file`, logging at debug level."""
    tmp = tmp_path_factory.mktemp("auth")
    (tmp / "tokens.toml").write_text(TOKEN_FILE)
    (tmp / "engine.toml").write_text('log_level = "debug"\n')
    proc = start_engine(
        tmp, "--config", str(tmp / "engine.toml"), "--token-file", str(tmp / "tokens.toml")
    )
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.output()


@pytest.fixture(scope="module")
def channel(server: EngineProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as ch:
        yield ch


def _md(who: str | None) -> tuple[tuple[str, str | bytes], ...]:
    if who is None:
        return ()
    return (("authorization", f"Bearer {TOKENS.get(who, who)}"),)


def _code(rpc: Callable[..., Any], request: Any, who: str | None) -> grpc.StatusCode:
    try:
        reply = rpc(request, metadata=_md(who), timeout=10)
        if hasattr(reply, "__next__"):  # a stream: its first answer decides
            next(reply, None)
            reply.cancel()
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def _refusal(rpc: Callable[..., Any], request: Any, who: str | None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        reply = rpc(request, metadata=_md(who), timeout=10)
        if hasattr(reply, "__next__"):
            next(reply)
    return err.value


def _task(project: str, name: str = "auth.t") -> tasks_pb2.TaskTemplate:
    return tasks_pb2.TaskTemplate(
        id=identifier_pb2.Identifier(project=project, name=name, version="v1"),
        interface=interface_pb2.TypedInterface(),
        worker=tasks_pb2.WorkerTarget(queue=QUEUE, handler="m:f"),
    )


def _workflow(project: str, task_project: str | None = None) -> workflow_pb2.WorkflowTemplate:
    wf = workflow_pb2.WorkflowTemplate(
        id=identifier_pb2.Identifier(project=project, name="auth.wf", version="v1"),
        interface=interface_pb2.TypedInterface(),
    )
    node = wf.nodes.add(id="n0")
    node.task_node.task_id.CopyFrom(_task(task_project or project).id)
    return wf


def _register(channel: grpc.Channel, who: str, *projects: str) -> None:
    stub = rs_grpc.RegistryServiceStub(channel)
    request = rs.RegisterRequest(
        tasks=[_task(p) for p in projects], workflows=[_workflow(p) for p in projects]
    )
    stub.Register(request, metadata=_md(who), timeout=10)


def _execute(channel: grpc.Channel, who: str, project: str) -> es.Execution:
    stub = es_grpc.ExecutionServiceStub(channel)
    request = es.CreateExecutionRequest(workflow_id=_workflow(project).id)
    return stub.CreateExecution(request, metadata=_md(who), timeout=10).execution


# -- authentication ---------------------------------------------------------------------------


def test_missing_or_unknown_tokens_are_unauthenticated(channel: grpc.Channel) -> None:
    registry = rs_grpc.RegistryServiceStub(channel)
    executions = es_grpc.ExecutionServiceStub(channel)
    for who in (None, "not-a-token", TOKENS["admin"][:-1], TOKENS["admin"] + "x"):
        err = _refusal(registry.ListTasks, rs.ListTasksRequest(project="alpha"), who)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "missing or unknown token" in (err.details() or "")
        assert _code(executions.ListExecutions, es.ListExecutionsRequest(), who) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
    # Another scheme than Bearer is no token either.
    basic: tuple[tuple[str, str | bytes], ...] = (("authorization", f"Basic {TOKENS['admin']}"),)
    with pytest.raises(grpc.RpcError) as basic_err:
        registry.ListTasks(rs.ListTasksRequest(), metadata=basic, timeout=10)
    assert basic_err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_and_reflection_answer_without_a_token(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name for a in answers for s in a.list_services_response.service}
    assert "plaitidl.service.v1.ExecutionService" in names


# -- roles ------------------------------------------------------------------------------------


def test_each_role_calls_what_it_may_and_nothing_else(channel: grpc.Channel) -> None:
    registry = rs_grpc.RegistryServiceStub(channel)
    executions = es_grpc.ExecutionServiceStub(channel)
    workers = ws_grpc.WorkerServiceStub(channel)
    hello = iter([ws.SessionRequest(hello=ws.Hello(worker_id="probe", queues=["none"], slots=1))])
    register = rs.RegisterRequest(tasks=[_task("alpha", "auth.roles")])
    validate = rs.ValidateTemplatesRequest(tasks=[_task("alpha", "auth.roles")])
    calls: dict[str, tuple[Callable[..., Any], Any]] = {
        "Register": (registry.Register, register),
        "ValidateTemplates": (registry.ValidateTemplates, validate),
        "ListTasks": (registry.ListTasks, rs.ListTasksRequest(project="alpha")),
        "GetTask": (registry.GetTask, rs.GetTaskRequest(id=_task("alpha", "auth.roles").id)),
        "ListExecutions": (executions.ListExecutions, es.ListExecutionsRequest(project="alpha")),
        "GetExecution": (
            executions.GetExecution,
            es.GetExecutionRequest(
                id=identifier_pb2.ExecutionIdentifier(project="alpha", name="x")
            ),
        ),
    }
    allowed = {
        "admin": set(calls) | {"Session"},
        "client-a": set(calls),
        "worker-a": {"Register", "ValidateTemplates", "Session"},
    }
    for who, may in allowed.items():
        for name, (rpc, request) in calls.items():
            code = _code(rpc, request, who)
            if name in may:
                # Allowed: whatever the answer (the execution "x" does not exist), not refused.
                assert code not in (grpc.StatusCode.PERMISSION_DENIED,
                                    grpc.StatusCode.UNAUTHENTICATED), (who, name, code)  # fmt: skip
            else:
                err = _refusal(rpc, request, who)
                assert err.code() == grpc.StatusCode.PERMISSION_DENIED, (who, name)
                assert f"token {who!r} (role worker) may not call" in (err.details() or "")
                assert name in (err.details() or "")
    session = ws_grpc.WorkerServiceStub(channel).Session
    err = _refusal(session, hello, "client-a")
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "WorkerService/Session" in (err.details() or "")
    for who in ("admin", "worker-a"):
        stream: Any = workers.Session(
            iter([ws.SessionRequest(hello=ws.Hello(worker_id=who, queues=["none"], slots=1))]),
            metadata=_md(who),
            timeout=10,
        )
        assert next(stream).HasField("welcome")
        stream.cancel()


# -- projects ---------------------------------------------------------------------------------


def test_requests_naming_other_projects_are_refused(channel: grpc.Channel) -> None:
    _register(channel, "admin", "alpha", "beta")
    registry = rs_grpc.RegistryServiceStub(channel)
    executions = es_grpc.ExecutionServiceStub(channel)

    def denied(rpc: Callable[..., Any], request: Any, who: str, field: str, project: str) -> None:
        err = _refusal(rpc, request, who)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, (field, err)
        assert err.details() == f"{field}: token {who!r} may not use project {project!r}"

    # Registering into another project, or a workflow referencing another project's task.
    denied(registry.Register, rs.RegisterRequest(tasks=[_task("beta", "auth.x")]), "client-a",
           "tasks[0].id.project", "beta")  # fmt: skip
    denied(registry.Register, rs.RegisterRequest(workflows=[_workflow("alpha", "beta")]),
           "client-a", "workflows[0].nodes[0].task_node.task_id.project", "beta")  # fmt: skip
    denied(registry.Register, rs.RegisterRequest(tasks=[_task("beta", "auth.x")]), "worker-a",
           "tasks[0].id.project", "beta")  # fmt: skip
    # Gets and lists of another project (an empty project is the default project).
    denied(registry.GetTask, rs.GetTaskRequest(id=_task("beta").id), "client-a",
           "id.project", "beta")  # fmt: skip
    denied(registry.ListTasks, rs.ListTasksRequest(project="beta"), "client-a", "project", "beta")
    denied(registry.ListWorkflows, rs.ListWorkflowsRequest(), "client-a", "project", "default")
    denied(executions.ListExecutions, es.ListExecutionsRequest(project="beta"), "client-a",
           "project", "beta")  # fmt: skip
    denied(executions.CreateExecution, es.CreateExecutionRequest(workflow_id=_workflow("beta").id),
           "client-a", "workflow_id.project", "beta")  # fmt: skip
    denied(executions.CreateExecution,
           es.CreateExecutionRequest(project="beta", workflow_id=_workflow("alpha").id),
           "client-a", "project", "beta")  # fmt: skip
    beta = _execute(channel, "client-ab", "beta")
    denied(executions.GetExecution, es.GetExecutionRequest(id=beta.id), "client-a",
           "id.project", "beta")  # fmt: skip
    denied(executions.WatchExecution, es.WatchExecutionRequest(id=beta.id), "client-a",
           "id.project", "beta")  # fmt: skip
    node = es.ListNodeExecutionsRequest(id=beta.id)
    denied(executions.ListNodeExecutions, node, "client-a", "id.project", "beta")
    data = es.GetNodeExecutionDataRequest()
    data.id.node_id = "n0"
    data.id.execution_id.CopyFrom(beta.id)
    denied(executions.GetNodeExecutionData, data, "client-a", "id.execution_id.project", "beta")
    denied(executions.TerminateExecution, es.TerminateExecutionRequest(id=beta.id), "client-a",
           "id.project", "beta")  # fmt: skip

    # The same calls within the token's projects work; lists hold only the asked project.
    alpha = _execute(channel, "client-a", "alpha")
    got = executions.GetExecution(es.GetExecutionRequest(id=alpha.id), metadata=_md("client-a"))
    assert got.execution.id.project == "alpha"
    listed = executions.ListExecutions(
        es.ListExecutionsRequest(project="alpha"), metadata=_md("client-a"), timeout=10
    )
    assert listed.executions and {e.id.project for e in listed.executions} == {"alpha"}
    tasks = registry.ListTasks(
        rs.ListTasksRequest(project="alpha"), metadata=_md("client-a"), timeout=10
    )
    assert tasks.tasks and {t.id.project for t in tasks.tasks} == {"alpha"}
    # A token given to the engine as its SHA-256 works the same way.
    hashed: tuple[tuple[str, str | bytes], ...] = (("authorization", f"Bearer {HASHED}"),)
    assert executions.GetExecution(es.GetExecutionRequest(id=beta.id), metadata=hashed, timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        executions.GetExecution(es.GetExecutionRequest(id=alpha.id), metadata=hashed, timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for rec in (alpha, beta):
        terminate = es.TerminateExecutionRequest(id=rec.id)
        executions.TerminateExecution(terminate, metadata=_md("admin"), timeout=10)


class _Worker:
    """A worker session opened by hand: records its assignments and answers each at once."""

    def __init__(self, channel: grpc.Channel, who: str, hello: ws.Hello | None = None) -> None:
        self.outbox: queue.Queue[ws.SessionRequest | None] = queue.Queue()
        hello = hello or ws.Hello(worker_id=who, queues=[QUEUE], slots=8, language="test")
        self.outbox.put(ws.SessionRequest(hello=hello))
        self.assignments: list[ws.Assignment] = []
        self.welcomed = threading.Event()
        self.error: grpc.RpcError | None = None
        self.stream: Any = ws_grpc.WorkerServiceStub(channel).Session(
            iter(self.outbox.get, None), metadata=_md(who)
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for message in self.stream:
                if message.HasField("welcome"):
                    self.welcomed.set()
                for a in message.assignments.assignments:
                    self.assignments.append(a)
                    result = ws.TaskResult(assignment_id=a.assignment_id, attempt=a.attempt)
                    result.outputs.SetInParent()
                    batch = ws.ResultBatch(results=[result])
                    self.outbox.put(ws.SessionRequest(results=batch))
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                self.error = err

    def projects(self) -> set[str]:
        return {
            a.task_execution_id.node_execution_id.execution_id.project for a in self.assignments
        }

    def close(self) -> None:
        self.outbox.put(None)
        self.stream.cancel()
        self.thread.join(10)


def _wait_phase(channel: grpc.Channel, execution: es.Execution, phase: int) -> None:
    stub = es_grpc.ExecutionServiceStub(channel)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = stub.GetExecution(es.GetExecutionRequest(id=execution.id), metadata=_md("admin"))
        if got.execution.phase == phase:
            return
        time.sleep(0.05)
    raise AssertionError(f"{execution.id.name} never reached phase {phase}: {got.execution}")


def test_worker_tokens_receive_only_their_projects_assignments(channel: grpc.Channel) -> None:
    _register(channel, "admin", "alpha", "beta")
    a = _Worker(channel, "worker-a")
    b: _Worker | None = None
    try:
        assert a.welcomed.wait(10)
        betas = [_execute(channel, "admin", "beta") for _ in range(2)]
        alphas = [_execute(channel, "admin", "alpha") for _ in range(2)]
        for x in alphas:
            _wait_phase(channel, x, EP.EXECUTION_PHASE_SUCCEEDED)
        time.sleep(0.3)  # room for a wrong assignment to arrive
        assert a.projects() == {"alpha"} and len(a.assignments) == 2
        stub = es_grpc.ExecutionServiceStub(channel)
        for x in betas:  # waiting for a worker of their project
            got = stub.GetExecution(es.GetExecutionRequest(id=x.id), metadata=_md("admin"))
            assert got.execution.phase != EP.EXECUTION_PHASE_SUCCEEDED
        b = _Worker(channel, "worker-b")
        for x in betas:
            _wait_phase(channel, x, EP.EXECUTION_PHASE_SUCCEEDED)
        assert b.projects() == {"beta"} and len(b.assignments) == 2
        assert a.projects() == {"alpha"} and a.error is None and b.error is None
    finally:
        a.close()
        if b is not None:
            b.close()


def test_a_worker_hello_naming_other_projects_is_refused(channel: grpc.Channel) -> None:
    hello = ws.Hello(worker_id="w", queues=[QUEUE], slots=1, tasks=[_task("beta").id])
    w = _Worker(channel, "worker-a", hello)
    w.thread.join(10)
    assert w.error is not None and w.error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (
        w.error.details() == "hello.tasks[0].project: token 'worker-a' may not use project 'beta'"
    )
    w.close()


def test_tokens_never_reach_the_log(channel: grpc.Channel, server: EngineProcess) -> None:
    registry = rs_grpc.RegistryServiceStub(channel)
    for who in (*TOKENS, TOKENS["admin"][:-1], HASHED):
        _code(registry.ListTasks, rs.ListTasksRequest(project="alpha"), who)
    _code(registry.ListTasks, rs.ListTasksRequest(project="beta"), "client-a")
    log = server.output()
    assert "DEBUG" in log and "by token 'client-a'" in log  # it did log at debug level
    assert "refused /plaitidl.service.v1.RegistryService/ListTasks: unknown token" in log
    for secret in (*TOKENS.values(), TOKENS["admin"][:-1], HASHED):
        assert secret not in log
        assert hashlib.sha256(secret.encode()).hexdigest() not in log
    assert "Traceback" not in log


# -- configuration ----------------------------------------------------------------------------


def test_a_bad_token_file_stops_the_server_naming_the_entry(tmp_path: Path) -> None:
    bad = tmp_path / "tokens.toml"
    bad.write_text(
        '[[tokens]]\nname = "ops"\ntoken = "a-secret-that-is-long"\n'
        'role = "root"\nprojects = ["*"]\n'
    )
    done = subprocess.run(
        plait_command("serve", "--address", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"),
                      "--token-file", str(bad)),
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "tokens[0] (ops): role must be one of admin, client, worker" in done.stderr
    assert "a-secret-that-is-long" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "d" / "plait.db").exists()


def test_single_token_is_one_admin_token(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    proc = start_engine(tmp_path, "--token", "s3cret")
    engine_factory.append(proc)
    with grpc.insecure_channel(proc.address) as ch:
        w = _Worker(ch, "s3cret")
        assert w.welcomed.wait(10)
        w.close()
        registry = rs_grpc.RegistryServiceStub(ch)
        assert _code(registry.ListTasks, rs.ListTasksRequest(project="any"), "s3cret") == (
            grpc.StatusCode.OK
        )
        assert _code(registry.ListTasks, rs.ListTasksRequest(), "s3cre") == (
            grpc.StatusCode.UNAUTHENTICATED
        )
