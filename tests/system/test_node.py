"""Any language can be a generator: a Node.js worker and client (examples/node) that share
nothing with the Python SDK but the .proto files, against a real `plait serve`.

The Node client registers a workflow written as protos; its node `fan` runs the Node generator
`node_mix.fan_out`, whose DynamicJobSpec fans out to the Python task `node_mix.square` (served
by `plait worker tests/workflows/node_mix.py`); `sum` is the Python `node_mix.total`, and
`greet` the Node `node_mix.greet`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from plaitidl.core.v1 import (
    execution_pb2,
    identifier_pb2,
    interface_pb2,
    literals_pb2,
    types_pb2,
    workflow_pb2,
)
from plaitidl.service.v1 import (
    execution_service_pb2,
    execution_service_pb2_grpc,
    registry_service_pb2,
    registry_service_pb2_grpc,
)

from tests.support.servers import EngineProcess, start_engine, start_worker

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "examples" / "node"
SQUARES_0_TO_6 = [0, 1, 4, 9, 16, 25, 36]


def _node() -> str:
    node = shutil.which("node")
    # Not a skip: this test exists to prove that a second language works, so no node is a failure.
    assert node is not None, "node (v18+) must be on PATH for the Node.js example test"
    return node


@pytest.fixture(scope="module")
def node_bin() -> str:
    """The node binary, with examples/node's dependencies installed (`npm ci` when missing)."""
    node = _node()
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, "npm must be on PATH to install examples/node's dependencies"
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300
        )
    return node


@dataclass
class Stack:
    """An engine with a Python worker and a Node worker connected to it."""

    engine: EngineProcess
    python_worker: subprocess.Popen[bytes]
    node_worker: subprocess.Popen[bytes]
    logs: Path

    def output(self) -> str:
        """Every process's output, for failure messages."""
        parts = [f"--- engine ---\n{self.engine.output()}"]
        for name in ("python-worker.log", "node-worker.log"):
            path = self.logs / name
            parts.append(f"--- {name} ---\n{path.read_text(errors='replace')}")
        return "\n".join(parts)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def stack(tmp_path: Path, node_bin: str) -> Iterator[Stack]:
    engine = start_engine(tmp_path)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            start_worker(
                engine.address, "tests/workflows/node_mix.py", log=tmp_path / "python-worker.log"
            )
        )
        with open(tmp_path / "node-worker.log", "ab") as out:
            procs.append(
                subprocess.Popen(
                    [node_bin, str(NODE_DIR / "worker.js"), "--engine", engine.address],
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={k: v for k, v in os.environ.items() if k != "PLAIT_TOKEN"},
                )
            )
        yield Stack(engine, procs[0], procs[1], tmp_path)
    finally:
        for proc in procs:
            _stop(proc)
        engine.kill()


def _client(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_node(), str(NODE_DIR / "client.js"), "--engine", stack.engine.address, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _outputs(stack: Stack, run: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{stack.output()}"
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("outputs "), run.stdout
    result: dict[str, object] = json.loads(last.removeprefix("outputs "))
    return result


def _execution_id(run: subprocess.CompletedProcess[str]) -> identifier_pb2.ExecutionIdentifier:
    line = next(x for x in run.stdout.splitlines() if x.startswith("execution "))
    project, domain, name = line.split()[1].split("/")
    return identifier_pb2.ExecutionIdentifier(project=project, domain=domain, name=name)


def test_node_generator_fans_out_to_python_tasks(stack: Stack) -> None:
    run = _client(stack, "--n", "7", "--name", "plait")
    assert _outputs(stack, run) == {
        "squares": SQUARES_0_TO_6,
        "total": 91,
        "greeting": "Hello, plait! The sum of squares is 91.",
    }
    # The client printed the node transitions as they came, sub-graph nodes included.
    events = run.stdout
    assert "DYNAMIC_RUNNING" in events and "spec_nodes=7" in events
    for i in range(7):
        assert f"node fan/sq{i}" in events

    with grpc.insecure_channel(stack.engine.address) as channel:
        executions = execution_service_pb2_grpc.ExecutionServiceStub(channel)
        registry = registry_service_pb2_grpc.RegistryServiceStub(channel)
        nodes = executions.ListNodeExecutions(
            execution_service_pb2.ListNodeExecutionsRequest(id=_execution_id(run)), timeout=10
        ).node_executions
        by_id = {n.id.node_id: n for n in nodes}
        assert set(by_id) == {"fan", "sum", "greet", *(f"fan/sq{i}" for i in range(7))}
        assert all(n.phase == execution_pb2.NODE_PHASE_SUCCEEDED for n in nodes)
        assert by_id["fan"].is_dynamic
        assert by_id["fan/sq3"].parent_node_id == "fan"
        # Who ran what: each task's template says which language serves it.
        ran = {node_id: n.task_id for node_id, n in by_id.items()}
        languages = {}
        for node_id, task_id in ran.items():
            template = registry.GetTask(
                registry_service_pb2.GetTaskRequest(id=task_id), timeout=10
            ).task
            languages[node_id] = (template.id.name, template.metadata.runtime.language)
        assert languages["fan"] == ("node_mix.fan_out", "javascript")
        assert languages["greet"] == ("node_mix.greet", "javascript")
        assert languages["sum"] == ("node_mix.total", "python")
        assert {languages[f"fan/sq{i}"] for i in range(7)} == {("node_mix.square", "python")}
        # The generator pinned the newest registered version of the Python task.
        newest = registry.GetTask(
            registry_service_pb2.GetTaskRequest(
                id=identifier_pb2.Identifier(name="node_mix.square")
            ),
            timeout=10,
        ).task.id
        assert ran["fan/sq0"].version == newest.version != ""


def test_node_worker_reuses_templates_reports_errors_and_reconnects(stack: Stack) -> None:
    # A second execution: the session now sends the Node templates by key only.
    first = _outputs(stack, _client(stack, "--n", "3", "--name", "again"))
    assert first["greeting"] == "Hello, again! The sum of squares is 5."
    second = _outputs(stack, _client(stack, "--n", "4", "--name", "twice"))
    assert second == {
        "squares": [0, 1, 4, 9],
        "total": 14,
        "greeting": "Hello, twice! The sum of squares is 14.",
    }

    # A handler's error fails the node and the client exits non-zero with the engine's message.
    bad = _client(stack, "--n", "-1")
    assert bad.returncode == 1, bad.stdout
    assert "ValueError: n must be in 0..10000, not -1" in bad.stderr
    assert "(node fan)" in bad.stderr

    # The engine crashes and comes back on the same port: both workers reconnect by themselves.
    stack.engine.kill()
    stack.engine.restart()
    run = _client(stack, "--n", "7", "--wait", "20")
    assert _outputs(stack, run)["total"] == 91
    assert stack.node_worker.poll() is None and stack.python_worker.poll() is None
    node_log = (stack.logs / "node-worker.log").read_text()
    assert node_log.count("open (heartbeat every") >= 2 and "reconnecting" in node_log, node_log
    # Within a session, a template travels in full once, then by key.
    assert "node_mix.fan_out (template by key)" in node_log, node_log


def _greet_workflow(
    greet: identifier_pb2.Identifier, name: str = "node_big.greet", out: str = "greeting"
) -> workflow_pb2.WorkflowTemplate:
    """A workflow written as protos: name -> the Node task greet(name, total=5) -> greeting
    (or another Node task of the same inputs, and its output `out`)."""
    string = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_STRING)
    five = literals_pb2.Literal()
    five.scalar.primitive.integer = 5
    node = workflow_pb2.Node(
        id="greet",
        task_node=workflow_pb2.TaskNode(task_id=greet),
        inputs=[
            literals_pb2.Binding(
                var="name",
                binding=literals_pb2.BindingData(
                    promise=literals_pb2.OutputReference(node_id="start-node", var="name")
                ),
            ),
            literals_pb2.Binding(var="total", binding=literals_pb2.BindingData(literal=five)),
        ],
    )
    return workflow_pb2.WorkflowTemplate(
        id=identifier_pb2.Identifier(
            resource_type=identifier_pb2.RESOURCE_TYPE_WORKFLOW,
            project="default",
            domain="development",
            name=name,
            version="v1",
        ),
        interface=interface_pb2.TypedInterface(
            inputs=interface_pb2.VariableMap(
                variables=[interface_pb2.Variable(name="name", type=string)]
            ),
            outputs=interface_pb2.VariableMap(
                variables=[interface_pb2.Variable(name="greeting", type=string)]
            ),
        ),
        nodes=[node],
        outputs=[
            literals_pb2.Binding(
                var="greeting",
                binding=literals_pb2.BindingData(
                    promise=literals_pb2.OutputReference(node_id="greet", var=out)
                ),
            )
        ],
    )


def test_node_worker_reads_offloaded_inputs_through_data_service(stack: Stack) -> None:
    from plait import Client

    name = "N" * (3 << 20)  # above the 1 MiB inline limit: it travels by reference
    with Client(stack.engine.address) as client:
        request = registry_service_pb2.GetTaskRequest(
            id=identifier_pb2.Identifier(name="node_mix.greet")
        )
        end = time.monotonic() + 30
        while True:  # the Node worker registers its tasks once it is up
            try:
                greet = client.registry.GetTask(request, timeout=10).task.id
                break
            except grpc.RpcError:
                assert time.monotonic() < end, stack.output()
                time.sleep(0.2)
        wf = _greet_workflow(greet)
        client.register_templates(registry_service_pb2.RegisterRequest(workflows=[wf]))
        handle = client.execute(wf.id, {"name": name})
        assert client.data(handle, resolve=False).inputs.literals["name"].HasField("offloaded")
        greeting = client.wait(handle, timeout=60)
        assert greeting == f"Hello, {name}! The sum of squares is 5.", stack.output()
        # The Node worker answered inline; the engine sends the large output by reference.
        raw = client.data(handle, resolve=False)
        assert raw.outputs.literals["greeting"].HasField("offloaded")
    node_log = (stack.logs / "node-worker.log").read_text()
    assert "node_mix.greet" in node_log


def test_node_worker_serves_a_custom_task_type(stack: Stack) -> None:
    from plait import Client

    with Client(stack.engine.address) as client:
        request = registry_service_pb2.GetTaskRequest(
            id=identifier_pb2.Identifier(name="node_mix.shout")
        )
        end = time.monotonic() + 30
        while True:  # the Node worker registers its tasks once it is up
            try:
                shout = client.registry.GetTask(request, timeout=10).task
                break
            except grpc.RpcError:
                assert time.monotonic() < end, stack.output()
                time.sleep(0.2)
        # The engine has no plugin for "format": it took the configuration as it was.
        assert shout.type == "format"
        custom = json_format.MessageToDict(shout.custom)
        assert custom == {"template": "{name} has {total} points", "uppercase": True}
        wf = _greet_workflow(shout.id, name="node_big.shout", out="text")
        client.register_templates(registry_service_pb2.RegisterRequest(workflows=[wf]))
        handle = client.execute(wf.id, {"name": "ann"})
        assert client.wait(handle, timeout=60) == "ANN HAS 5 POINTS", stack.output()
    # Only the Node worker declares the type: the Python worker on its queue never sees it.
    node_log = (stack.logs / "node-worker.log").read_text()
    assert "node_mix.shout (template in full)" in node_log
