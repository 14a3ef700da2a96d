"""Process targets when blobs live in S3 (moto's server): each attempt runs in a local staging
folder, the previous attempt's checkpoint is downloaded into it, and what the attempt leaves is
uploaded under its key, blob URIs in its outputs rewritten to the uploaded objects."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from plait_engine.app import build_engine
from plait_engine.config import EngineConfig
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

from tests.support.s3 import S3Server

STR = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_STRING)
CSV = types_pb2.LiteralType(
    blob=types_pb2.BlobType(
        format="csv", dimensionality=types_pb2.BlobType.BLOB_DIMENSIONALITY_SINGLE
    )
)
FILES = types_pb2.LiteralType(collection_type=CSV)

PROGRAM = r"""
import json, os, sys
from pathlib import Path
from plaitidl.core.v1 import errors_pb2, literals_pb2

out, raw, ckpt, prev, mode = (Path(a) for a in sys.argv[1:6])
attempt = os.environ["FLYTE_ATTEMPT_NUMBER"]
(ckpt / "state.txt").write_text(f"written by attempt {attempt}")
(ckpt / "deep").mkdir()
(ckpt / "deep" / "more.txt").write_text("nested")
if attempt == "0":
    err = errors_pb2.ExecutionError(code="Flaky", message="first attempt fails",
                                    kind=errors_pb2.ExecutionError.KIND_USER, recoverable=True)
    (out / "error.pb").write_bytes(err.SerializeToString())
    sys.exit(0)
(raw / "data.csv").write_text("a,b\n1,2\n")
(raw / "parts").mkdir()
(raw / "parts" / "p0.csv").write_text("x\n0\n")
(raw / "leak").symlink_to("/etc/hostname")
if str(mode) == "badname":
    (raw / "my file.csv").write_text("spaces are no key")
report = {
    "cwd": os.getcwd(),
    "prev_state": (prev / "state.txt").read_text(),
    "prev_nested": (prev / "deep" / "more.txt").read_text(),
}
lm = literals_pb2.LiteralMap()
lm.literals["report"].scalar.primitive.string_value = json.dumps(report)
def blob(lit, uri):
    lit.scalar.blob.uri = uri
    lit.scalar.blob.type.format = "csv"
    lit.scalar.blob.type.dimensionality = 1  # SINGLE
blob(lm.literals["file"], (raw / "data.csv").as_uri())
files = lm.literals["files"].collection.literals
blob(files.add(), str(raw / "parts" / "p0.csv"))
blob(files.add(), "s3://elsewhere/kept.csv")
(out / "outputs.pb").write_bytes(lm.SerializeToString())
"""


def _iface(outputs: dict[str, types_pb2.LiteralType]) -> interface_pb2.TypedInterface:
    return interface_pb2.TypedInterface(
        inputs=interface_pb2.VariableMap(),
        outputs=interface_pb2.VariableMap(
            variables=[interface_pb2.Variable(name=k, type=v) for k, v in outputs.items()]
        ),
    )


OUTPUTS = {"report": STR, "file": CSV, "files": FILES}


def _task(mode: str) -> tasks_pb2.TaskTemplate:
    args = [
        "{{.outputPrefix}}",
        "{{.rawOutputDataPrefix}}",
        "{{.checkpointOutputPrefix}}",
        "{{.prevCheckpointPrefix}}",
        mode,
    ]
    return tasks_pb2.TaskTemplate(
        id=identifier_pb2.Identifier(project="proj", domain="dev", name=f"s3.{mode}", version="1"),
        type="python-task",
        metadata=tasks_pb2.TaskMetadata(retries=tasks_pb2.RetryStrategy(retries=1)),
        interface=_iface(OUTPUTS),
        process=tasks_pb2.ProcessTarget(command=[sys.executable, "-c", PROGRAM], args=args),
    )


def _workflow(task: tasks_pb2.TaskTemplate) -> workflow_pb2.WorkflowTemplate:
    def out(var: str) -> literals_pb2.Binding:
        ref = literals_pb2.OutputReference(node_id="t", var=var)
        return literals_pb2.Binding(var=var, binding=literals_pb2.BindingData(promise=ref))

    return workflow_pb2.WorkflowTemplate(
        id=identifier_pb2.Identifier(
            project="proj", domain="dev", name=f"{task.id.name}.wf", version="1"
        ),
        interface=_iface(OUTPUTS),
        nodes=[workflow_pb2.Node(id="t", task_node=workflow_pb2.TaskNode(task_id=task.id))],
        outputs=[out(v) for v in OUTPUTS],
    )


async def _run(
    config: EngineConfig, mode: str
) -> tuple[int, literals_pb2.LiteralMap, errors_pb2.ExecutionError, list[str]]:
    engine = build_engine(config)
    await engine.start()
    try:
        task = _task(mode)
        wf = _workflow(task)
        await engine.registry.register(tasks=[task], workflows=[wf])
        rec = await engine.executions.create(
            workflow_id=wf.id, inputs=literals_pb2.LiteralMap(), project="proj", domain="dev",
            name=f"run-{mode}",
        )  # fmt: skip
        final = await engine.executions.wait(rec, timeout=60)
        outputs = (await engine.executions.data(final))[1]
        keys = engine.objects.list(f"executions/proj/dev/run-{mode}")
        return final.phase, outputs, errors_pb2.ExecutionError.FromString(final.error), keys
    finally:
        await engine.stop()


def _config(tmp_path: Path, server: S3Server, bucket: str) -> EngineConfig:
    return EngineConfig(
        data_dir=tmp_path / "data",
        allow_process=("*",),
        blob_url=bucket,
        blob_endpoint=server.endpoint,
    )


def test_attempts_are_staged_and_uploaded(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    config = _config(tmp_path, s3_server, s3_bucket)
    phase, outputs, error, keys = asyncio.run(_run(config, "ok"))
    assert phase == execution_pb2.EXECUTION_PHASE_SUCCEEDED, error
    report = json.loads(outputs.literals["report"].scalar.primitive.string_value)
    # It ran in a local staging folder, and read the first attempt's checkpoint from S3.
    assert report["cwd"].startswith(str(tmp_path / "data" / "staging"))
    assert report["prev_state"] == "written by attempt 0"
    assert report["prev_nested"] == "nested"
    assert not any((tmp_path / "data" / "staging").iterdir())  # removed after each attempt
    assert not (tmp_path / "data" / "blobs").exists()

    base = "executions/proj/dev/run-ok/t"
    for key in (
        "attempt-1/checkpoint/state.txt",
        "attempt-1/checkpoint/deep/more.txt",
        "attempt-1/out/error.pb",
        "attempt-2/raw/data.csv",
        "attempt-2/raw/parts/p0.csv",
        "attempt-2/out/outputs.pb",
        "attempt-2/inputs.pb",
    ):
        assert f"{base}/{key}" in keys, keys
    assert f"{base}/attempt-2/raw/leak" not in keys  # links are never followed
    assert all("prev" not in k for k in keys)  # the staged checkpoint is not stored again

    # Blob URIs into the staging folder now name the uploaded objects; others are kept.
    uri = outputs.literals["file"].scalar.blob.uri
    assert uri == f"{s3_bucket}/{base}/attempt-2/raw/data.csv"
    files = [lit.scalar.blob.uri for lit in outputs.literals["files"].collection.literals]
    assert files == [f"{s3_bucket}/{base}/attempt-2/raw/parts/p0.csv", "s3://elsewhere/kept.csv"]
    engine = build_engine(config)
    assert engine.objects.get(f"{base}/attempt-2/raw/data.csv") == b"a,b\n1,2\n"
    state = engine.objects.get(f"{base}/attempt-1/checkpoint/state.txt")
    assert state == b"written by attempt 0"


def test_a_file_no_key_can_name_fails_the_attempt(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    config = _config(tmp_path, s3_server, s3_bucket)
    phase, _, error, _ = asyncio.run(_run(config, "badname"))
    assert phase == execution_pb2.EXECUTION_PHASE_FAILED
    assert error.code == "BadFileName" and "my file.csv" in error.message, error
    assert not any((tmp_path / "data" / "staging").iterdir())
