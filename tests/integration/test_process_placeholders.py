"""Process targets get Flyte's placeholders, identity variables and a visible stdout.

A small Python program plays the task: it reports what it was given (argv and environment) as
its output, keeps a checkpoint, fails its first attempt and succeeds on the retry, reading the
first attempt's checkpoint through `{{.prevCheckpointPrefix}}`.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import pytest
from plait_engine.app import build_engine
from plait_engine.config import EngineConfig
from plait_engine.store import LogEntry
from plaitidl.core.v1 import (
    errors_pb2,
    execution_pb2,
    identifier_pb2,
    interface_pb2,
    literals_pb2,
    tasks_pb2,
    types_pb2,
    workflow_pb2,
)
from plaitidl.service.v1 import execution_service_pb2 as es

INT = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_INTEGER)
STR = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_STRING)
INT_LIST = types_pb2.LiteralType(collection_type=INT)

# argv[1] is the output folder; the rest are reported as they arrive.
PROGRAM = r"""
import json, os, sys
from pathlib import Path
from plaitidl.core.v1 import errors_pb2, literals_pb2

out = Path(sys.argv[1])
args = sys.argv[2:]
named = dict(zip(args[::2], args[1::2]))
attempt = os.environ["FLYTE_ATTEMPT_NUMBER"]
print(f"hello from attempt {attempt}", flush=True)
print(f"stderr line of attempt {attempt}", file=sys.stderr, flush=True)
(Path(named["ckpt"]) / "state.txt").write_text(f"written by attempt {attempt}")
if attempt == "0":
    err = errors_pb2.ExecutionError(code="Flaky", message="first attempt fails",
                                    kind=errors_pb2.ExecutionError.KIND_USER, recoverable=True)
    (out / "error.pb").write_bytes(err.SerializeToString())
    sys.exit(0)
prev = named["prev"]
report = {
    "named": named,
    "prev_state": (Path(prev) / "state.txt").read_text() if prev != '""' else None,
    "env": {k: v for k, v in os.environ.items() if k.startswith("FLYTE_") or k == "EXTRA"},
}
lm = literals_pb2.LiteralMap()
lm.literals["report"].scalar.primitive.string_value = json.dumps(report)
(out / "outputs.pb").write_bytes(lm.SerializeToString())
"""


def _iface(**inputs: types_pb2.LiteralType) -> interface_pb2.TypedInterface:
    return interface_pb2.TypedInterface(
        inputs=interface_pb2.VariableMap(
            variables=[interface_pb2.Variable(name=k, type=v) for k, v in inputs.items()]
        ),
        outputs=interface_pb2.VariableMap(
            variables=[interface_pb2.Variable(name="report", type=STR)]
        ),
    )


def _task(args: list[str], env: dict[str, str]) -> tasks_pb2.TaskTemplate:
    return tasks_pb2.TaskTemplate(
        id=identifier_pb2.Identifier(
            project="proj", domain="dev", name="tests.placeholders", version="v7"
        ),
        type="python-task",
        metadata=tasks_pb2.TaskMetadata(retries=tasks_pb2.RetryStrategy(retries=1)),
        interface=_iface(n=INT, xs=INT_LIST),
        process=tasks_pb2.ProcessTarget(
            command=[sys.executable, "-c", PROGRAM, "{{ .OutputPrefix }}"], args=args, env=env
        ),
    )


def _workflow(task: tasks_pb2.TaskTemplate) -> workflow_pb2.WorkflowTemplate:
    def promise(var: str) -> literals_pb2.BindingData:
        return literals_pb2.BindingData(
            promise=literals_pb2.OutputReference(node_id="start-node", var=var)
        )

    return workflow_pb2.WorkflowTemplate(
        id=identifier_pb2.Identifier(
            project="proj", domain="dev", name="tests.placeholders.wf", version="v7"
        ),
        interface=_iface(n=INT, xs=INT_LIST),
        nodes=[
            workflow_pb2.Node(
                id="t",
                task_node=workflow_pb2.TaskNode(task_id=task.id),
                inputs=[
                    literals_pb2.Binding(var="n", binding=promise("n")),
                    literals_pb2.Binding(var="xs", binding=promise("xs")),
                ],
            )
        ],
        outputs=[
            literals_pb2.Binding(
                var="report",
                binding=literals_pb2.BindingData(
                    promise=literals_pb2.OutputReference(node_id="t", var="report")
                ),
            )
        ],
    )


async def _run(
    data: Path, task: tasks_pb2.TaskTemplate, logs: list[LogEntry] | None = None
) -> tuple[int, literals_pb2.LiteralMap, errors_pb2.ExecutionError]:
    engine = build_engine(EngineConfig(data_dir=data, allow_process=("*",)))
    await engine.start()
    try:
        wf = _workflow(task)
        await engine.registry.register(tasks=[task], workflows=[wf])
        inputs = literals_pb2.LiteralMap()
        inputs.literals["n"].scalar.primitive.integer = 7
        for x in (1, 2):
            inputs.literals["xs"].collection.literals.add().scalar.primitive.integer = x
        rec = await engine.executions.create(
            workflow_id=wf.id, inputs=inputs, project="proj", domain="dev", name="run1"
        )
        final = await engine.executions.wait(rec, timeout=60)
        if logs is not None:
            await engine.logs.stop()  # everything written so far is in the store
            logs.extend(e for _, e in await engine.store.logs(rec.eid, "t", 0, 0, 1000))
        return (
            final.phase,
            (await engine.executions.data(final))[1],
            errors_pb2.ExecutionError.FromString(final.error),
        )
    finally:
        await engine.stop()


def test_placeholders_identity_and_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs: list[LogEntry] = []
    args = [
        *("input", "{{.input}}", "dollar", "{{ $Input }}", "prefix", "{{.inputPrefix}}"),
        *("raw", "{{.rawOutputDataPrefix}}", "ckpt", "{{.checkpointOutputPrefix}}"),
        *("prev", "{{.prevCheckpointPrefix}}", "key", "{{.perRetryUniqueKey}}"),
        *("template", "{{.taskTemplatePath}}", "n", "{{.inputs.n}}", "xs", "{{ .Inputs.xs }}"),
        *("unknown", "{{ .remote_package_path }}"),
    ]
    task = _task(args, {"EXTRA": "at {{.outputPrefix}}"})
    phase, outputs, error = asyncio.run(_run(tmp_path / "data", task, logs))
    assert phase == execution_pb2.EXECUTION_PHASE_SUCCEEDED, error
    report = json.loads(outputs.literals["report"].scalar.primitive.string_value)
    named = report["named"]
    attempt_dir = Path(named["prefix"])
    assert attempt_dir.name == "attempt-2" and attempt_dir.is_dir()
    assert named["input"] == named["dollar"] == str(attempt_dir / "inputs.pb")
    assert (
        literals_pb2.LiteralMap.FromString(Path(named["input"]).read_bytes())
        .literals["n"]
        .scalar.primitive.integer
        == 7
    )
    assert Path(named["raw"]) == attempt_dir / "raw" and Path(named["raw"]).is_dir()
    assert Path(named["ckpt"]) == attempt_dir / "checkpoint"
    # The retry reads what the first attempt checkpointed.
    assert Path(named["prev"]) == attempt_dir.parent / "attempt-1" / "checkpoint"
    assert report["prev_state"] == "written by attempt 0"
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*_2", named["key"]), named["key"]
    template = tasks_pb2.TaskTemplate.FromString(Path(named["template"]).read_bytes())
    assert template.id.name == "tests.placeholders" and template.id.version == "v7"
    assert (named["n"], named["xs"]) == ("7", "[1,2]")
    assert named["unknown"] == "{{ .remote_package_path }}"
    env = report["env"]
    assert env["EXTRA"] == f"at {attempt_dir / 'out'}"
    assert env["FLYTE_ATTEMPT_NUMBER"] == "1"
    assert env["FLYTE_INTERNAL_EXECUTION_PROJECT"] == "proj"
    assert env["FLYTE_INTERNAL_EXECUTION_DOMAIN"] == "dev"
    assert env["FLYTE_INTERNAL_EXECUTION_ID"] == "run1"
    for prefix in ("FLYTE_INTERNAL_TASK_", "FLYTE_INTERNAL_"):
        assert env[f"{prefix}PROJECT"] == "proj" and env[f"{prefix}DOMAIN"] == "dev"
        assert env[f"{prefix}NAME"] == "tests.placeholders"
        assert env[f"{prefix}VERSION"] == "v7"
    # The child's stdout and stderr are its attempt's log, not the engine's own output.
    lines = {(e.attempt, e.stream, e.text) for e in logs}
    assert (1, es.LOG_STREAM_STDOUT, "hello from attempt 0") in lines
    assert (2, es.LOG_STREAM_STDOUT, "hello from attempt 1") in lines
    assert (2, es.LOG_STREAM_STDERR, "stderr line of attempt 1") in lines
    captured = capsys.readouterr()
    assert "hello from attempt" not in captured.out + captured.err


def test_an_unknown_input_placeholder_fails_the_node(tmp_path: Path) -> None:
    task = _task(["ckpt", "{{.checkpointOutputPrefix}}", "x", "{{.inputs.nope}}"], {})
    phase, _, error = asyncio.run(_run(tmp_path / "data", task))
    assert phase == execution_pb2.EXECUTION_PHASE_FAILED
    assert error.code == "BadPlaceholder" and error.kind == errors_pb2.ExecutionError.KIND_USER
    assert "{{.inputs.nope}}" in error.message and "['n', 'xs']" in error.message
