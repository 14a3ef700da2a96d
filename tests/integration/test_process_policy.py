"""Process targets on a real `plait serve`: off unless allowed, refused at registration naming
the command, checked again when they run, with a scrubbed environment, as another user."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from plait import Client, ExecutionFailedError, RpcError
from plaitidl.core.v1 import (
    execution_pb2,
    identifier_pb2,
    interface_pb2,
    literals_pb2,
    tasks_pb2,
    types_pb2,
    workflow_pb2,
)
from plaitidl.service.v1 import registry_service_pb2 as rs

from tests.integration.conftest import BASH
from tests.support.servers import ROOT, EngineProcess, plait_command, start_engine

EP = execution_pb2
PYTHON = "/usr/bin/python3"  # the system's: readable by every user, unlike a venv under /root
STRING = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_STRING)
SECRET = "engine-secret-value-not-for-tasks"
# A process target in plain Python (no protobuf library): writes its uid, working folder and
# environment as JSON into the string output `out`.
ENV_DUMP = """
import json, os, sys

def varint(n):
    out = bytearray()
    while n >= 128:
        out.append(n & 127 | 128)
        n >>= 7
    out.append(n)
    return bytes(out)

def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload

text = json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
                   "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
literal = field(1, field(1, field(3, text)))  # Literal{scalar{primitive{string_value}}}
entry = field(1, b"out") + field(2, literal)  # LiteralMap.literals["out"]
with open(os.path.join(sys.argv[1], "outputs.pb"), "wb") as f:
    f.write(field(1, entry))
"""


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder every user may enter (pytest's are private to root), holding the task script;
    the engines started here see a secret in their environment."""
    base = Path(tempfile.mkdtemp(prefix="plait-policy-"))
    base.chmod(0o755)
    (base / "env_dump.py").write_text(ENV_DUMP)
    monkeypatch.setenv("PLAIT_TEST_SECRET", SECRET)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _task(command: list[str], name: str = "policy.dump") -> tasks_pb2.TaskTemplate:
    return tasks_pb2.TaskTemplate(
        id=identifier_pb2.Identifier(name=name, version="v1"),
        interface=interface_pb2.TypedInterface(
            outputs=interface_pb2.VariableMap(
                variables=[interface_pb2.Variable(name="out", type=STRING)]
            )
        ),
        process=tasks_pb2.ProcessTarget(command=command, env={"TASK_OWN": "kept"}),
    )


def _dump_task(world: Path) -> tasks_pb2.TaskTemplate:
    return _task([PYTHON, str(world / "env_dump.py"), "{{.outputPrefix}}"])


def _workflow(task: tasks_pb2.TaskTemplate) -> workflow_pb2.WorkflowTemplate:
    wf = workflow_pb2.WorkflowTemplate(
        id=identifier_pb2.Identifier(name=f"{task.id.name}.wf", version="v1"),
        interface=task.interface,
    )
    wf.nodes.add(id="n0").task_node.task_id.CopyFrom(task.id)
    wf.outputs.add(var="out").binding.promise.CopyFrom(
        literals_pb2.OutputReference(node_id="n0", var="out")
    )
    return wf


def _refused(client: Client, task: tasks_pb2.TaskTemplate) -> RpcError:
    with pytest.raises(RpcError) as err:
        client.register_templates(rs.RegisterRequest(tasks=[task], workflows=[_workflow(task)]))
    assert err.value.code == "PERMISSION_DENIED", err.value
    assert [f for f, _ in err.value.violations] == ["tasks[0].process.command"]
    assert err.value.message.startswith("tasks[0].process.command: ")
    return err.value


def _run(client: Client, task: tasks_pb2.TaskTemplate) -> dict[str, object]:
    client.register_templates(rs.RegisterRequest(tasks=[task], workflows=[_workflow(task)]))
    handle = client.execute(_workflow(task).id, literals_pb2.LiteralMap())
    out = client.wait(handle, timeout=60)
    assert isinstance(out, str)
    return json.loads(out)  # type: ignore[no-any-return]


def test_process_targets_are_off_by_default(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    proc = start_engine(tmp_path)
    engine_factory.append(proc)
    with Client(proc.address) as client:
        err = _refused(client, _task([BASH, "-c", "true"]))
        assert "process targets are off on this engine" in err.message
        assert "--allow-process" in err.message and BASH in err.message
        # ValidateTemplates reports the same problem.
        found = client._call(
            client.registry.ValidateTemplates,
            rs.ValidateTemplatesRequest(tasks=[_task([BASH, "-c", "true"])]),
        )
        assert [v.field for v in found.violations] == ["tasks[0].process.command"]
        # Worker targets are not concerned.
        worker = tasks_pb2.TaskTemplate(
            id=identifier_pb2.Identifier(name="policy.worker", version="v1"),
            worker=tasks_pb2.WorkerTarget(queue="q", handler="m:f"),
        )
        client.register_templates(rs.RegisterRequest(tasks=[worker]))


def test_allowed_commands_run_scrubbed_and_others_are_refused_naming_them(
    world: Path, engine_factory: list[EngineProcess]
) -> None:
    proc = start_engine(world, "--allow-process", PYTHON, "--allow-process", "/opt/plait-tasks/*")
    engine_factory.append(proc)
    sh = shutil.which("sh")
    assert sh is not None
    with Client(proc.address) as client:
        err = _refused(client, _task(["/bin/sh", "-c", "true"]))
        assert "/bin/sh is not an allowed process command" in err.message
        assert f"allowed: {PYTHON}, /opt/plait-tasks/*" in err.message
        err = _refused(client, _task(["sh", "-c", "true"]))
        assert f"sh ({sh}) is not an allowed process command" in err.message
        err = _refused(client, _task(["./run.sh"]))
        assert "'./run.sh' is a relative path" in err.message
        err = _refused(client, _task(["/opt/plait-tasks/../../bin/sh"]))
        assert "'..' part" in err.message

        dump = _run(client, _dump_task(world))
    env = dump["env"]
    assert isinstance(env, dict)
    assert SECRET not in json.dumps(dump) and "PLAIT_TEST_SECRET" not in env
    allowed = {"PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "HOME", "USER",
               "LOGNAME", "TASK_OWN", "FLYTE_ATTEMPT_NUMBER"}  # fmt: skip
    assert {k for k in env if not k.startswith("FLYTE_INTERNAL_")} <= allowed, sorted(env)
    assert env["TASK_OWN"] == "kept" and env["PATH"] == os.environ["PATH"]
    assert env["FLYTE_INTERNAL_EXECUTION_PROJECT"] == "default"
    assert env["HOME"] == os.path.expanduser("~") and dump["uid"] == os.geteuid()
    # It ran in its attempt's folder, inside the engine's data dir.
    cwd = Path(str(dump["cwd"]))
    assert cwd.is_relative_to(world / "engine") and cwd.name == "attempt-1"
    assert (cwd / "out" / "outputs.pb").is_file()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_process_targets_run_as_another_user(
    world: Path, engine_factory: list[EngineProcess]
) -> None:
    proc = start_engine(world, "--allow-process", PYTHON, "--process-user", "nobody")
    engine_factory.append(proc)
    with Client(proc.address) as client:
        dump = _run(client, _dump_task(world))
    import pwd

    nobody = pwd.getpwnam("nobody")
    assert dump["uid"] == nobody.pw_uid and dump["gid"] == nobody.pw_gid
    assert 0 not in dump["groups"]  # type: ignore[operator]
    env = dump["env"]
    assert isinstance(env, dict)
    assert env["HOME"] == nobody.pw_dir and env["USER"] == "nobody"


def test_a_command_no_longer_allowed_fails_its_node_without_retries(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    first = start_engine(tmp_path, "--allow-process", BASH)
    engine_factory.append(first)
    task = _task([BASH, "-c", "exit 3"], name="policy.changed")
    task.metadata.retries.retries = 3
    with Client(first.address) as client:
        client.register_templates(rs.RegisterRequest(tasks=[task], workflows=[_workflow(task)]))
    assert first.stop() == 0
    # The operator narrows the policy; the registered task stays, but may no longer run.
    second = start_engine(tmp_path, "--allow-process", "/opt/plait-tasks/*")
    engine_factory.append(second)
    with Client(second.address) as client:
        handle = client.execute(_workflow(task).id, literals_pb2.LiteralMap())
        with pytest.raises(ExecutionFailedError):
            client.wait(handle, timeout=60)
        state = client.get(handle)
        assert state.phase == EP.EXECUTION_PHASE_FAILED
        assert state.error.code == "PermissionDenied"
        assert f"{BASH} is not an allowed process command" in state.error.message
        (node,) = client.node_executions(handle)
        assert node.attempt == 1 and not node.error.recoverable


def test_a_dynamic_spec_embedding_a_command_not_allowed_fails_at_run_time(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    # The bash generator is allowed; the `cp` task its spec embeds is not.
    proc = start_engine(tmp_path, "--allow-process", BASH)
    engine_factory.append(proc)
    done = subprocess.run(
        plait_command("run", "--remote", proc.address, "examples/process/shell_workflow.py",
                      "shell_fan_out", "--n", "2"),
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "PermissionDenied" in done.stderr and "cp (" in done.stderr, done.stderr
    assert "is not an allowed process command" in done.stderr
    assert "Traceback" not in proc.output()


def test_an_unknown_process_user_stops_the_server(tmp_path: Path) -> None:
    done = subprocess.run(
        plait_command("serve", "--address", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"),
                      "--allow-process", BASH, "--process-user", "no-such-user-x"),
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "process_user: no user 'no-such-user-x'" in done.stderr
    assert "Traceback" not in done.stderr
