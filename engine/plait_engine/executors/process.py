"""Runs process targets as local child processes.

The engine writes the inputs, creates the attempt's folders, substitutes Flyte-style
placeholders in the command, args and env, sets the ``FLYTE_INTERNAL_*`` identity variables,
runs the program and reads back exactly one of ``outputs.pb``, ``futures.pb`` or ``error.pb``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from plaitidl.core.v1 import dynamic_job_pb2, errors_pb2, literals_pb2

from plait_engine.blob import BlobStore
from plait_engine.executors import Dispatch, Outcome, Result, ResultSink, system_error

# Placeholders as Flyte's container plugin writes them: `{{.name}}` or `{{ $name }}`, any case.
_PLACEHOLDER = re.compile(r"\{\{\s*[.$]([A-Za-z]+)\s*\}\}")
_INPUT_VALUE = re.compile(r"\{\{\s*[.$]inputs\.([^}\s]+)\s*\}\}", re.IGNORECASE)
_STREAM_TAIL = 2000


class _BadInputError(Exception):
    """An `{{.inputs.NAME}}` placeholder names no input, or one with no text form."""


def _input_text(lit: literals_pb2.Literal) -> str:
    """An input value as text, the way Flyte renders `{{.inputs.NAME}}`."""
    if lit.WhichOneof("value") == "collection":
        return "[" + ",".join(_input_text(x) for x in lit.collection.literals) + "]"
    scalar = lit.scalar
    kind = scalar.WhichOneof("value") if lit.WhichOneof("value") == "scalar" else None
    if kind == "blob":
        return scalar.blob.uri
    if kind != "primitive":
        raise _BadInputError("only simple values, blobs and lists of them can be rendered as text")
    p = scalar.primitive
    pk = p.WhichOneof("value")
    if pk == "boolean":
        return "true" if p.boolean else "false"
    if pk == "datetime":
        return p.datetime.ToJsonString()
    if pk == "duration":
        return f"{p.duration.ToTimedelta().total_seconds():g}s"
    return str(getattr(p, pk)) if pk else ""


def _render(text: str, values: dict[str, str], inputs: literals_pb2.LiteralMap) -> str:
    def one_input(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in inputs.literals:
            raise _BadInputError(f"{m.group(0)} names no input (inputs: {sorted(inputs.literals)})")
        return _input_text(inputs.literals[name])

    text = _INPUT_VALUE.sub(one_input, text)
    # Unknown placeholders stay as written: the program may expand them itself.
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1).lower(), m.group(0)), text)


def _identity_env(d: Dispatch) -> dict[str, str]:
    """Who is running, under the names flytekit (and Flyte's container plugins) read."""
    project, domain, name = ["", "", *d.execution.split("/")][-3:]
    t = d.task.id
    task_env = {"PROJECT": t.project, "DOMAIN": t.domain, "NAME": t.name, "VERSION": t.version}
    return {
        "FLYTE_INTERNAL_EXECUTION_PROJECT": project,
        "FLYTE_INTERNAL_EXECUTION_DOMAIN": domain,
        "FLYTE_INTERNAL_EXECUTION_ID": name,
        **{f"FLYTE_INTERNAL_TASK_{k}": v for k, v in task_env.items()},
        **{f"FLYTE_INTERNAL_{k}": v for k, v in task_env.items()},  # older flytekit names
        "FLYTE_ATTEMPT_NUMBER": str(d.attempt - 1),  # Flyte counts attempts from 0
    }


async def _forward(stream: asyncio.StreamReader | None, tail: bytearray | None) -> None:
    """Copy a child's output to the engine's stderr as it comes (stdout stays the CLI's)."""
    if stream is None:
        return
    while chunk := await stream.read(1 << 16):
        sys.stderr.write(chunk.decode(errors="replace"))
        sys.stderr.flush()
        if tail is not None:
            tail += chunk
            del tail[:-_STREAM_TAIL]


class ProcessExecutor:
    """Runs process targets as local child processes.

    The engine writes ``inputs.pb`` and creates an output folder; the process writes exactly
    one of ``outputs.pb``, ``futures.pb`` or ``error.pb`` there. A non-zero exit without
    ``error.pb`` is a system error. Flyte's placeholders are substituted in the command, args
    and env values (`{{.input}}`, `{{.inputPrefix}}`, `{{.outputPrefix}}`,
    `{{.rawOutputDataPrefix}}`, `{{.checkpointOutputPrefix}}`, `{{.prevCheckpointPrefix}}`,
    `{{.perRetryUniqueKey}}`, `{{.taskTemplatePath}}`, `{{.inputs.NAME}}`), the
    ``FLYTE_INTERNAL_*`` / ``FLYTE_ATTEMPT_NUMBER`` identity variables are set, and the
    child's stdout and stderr are copied to the engine's stderr.
    """

    def __init__(self, blobs: BlobStore, slots: int | None = None) -> None:
        self._blobs = blobs
        self._slots = asyncio.Semaphore(slots or max(2, os.cpu_count() or 2))
        self._sink: ResultSink | None = None
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, sink: ResultSink, loop: asyncio.AbstractEventLoop) -> None:
        self._sink = sink

    def submit(self, dispatches: Sequence[Dispatch]) -> None:
        for d in dispatches:
            t = asyncio.get_running_loop().create_task(self._run(d))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _run(self, d: Dispatch) -> None:
        async with self._slots:
            outcome = await self._run_process(d)
        if self._sink is not None:
            self._sink([Result(d.assignment_id, d.attempt, outcome, "process")])

    def _placeholders(self, d: Dispatch, base: Path, used: str) -> dict[str, str]:
        """The value of every placeholder, by lower-case name; folders are created."""
        (base / "raw").mkdir()
        (base / "checkpoint").mkdir()
        prev = ""
        if d.attempt > 1 and d.blob_parts[-1:] == (f"attempt-{d.attempt}",):
            parts = (*d.blob_parts[:-1], f"attempt-{d.attempt - 1}", "checkpoint")
            if self._blobs.path(*parts).is_dir():
                prev = str(self._blobs.path(*parts))
        values = {
            "input": str(base / "inputs.pb"),
            "inputprefix": str(base),
            "outputprefix": str(base / "out"),
            "rawoutputdataprefix": str(base / "raw"),
            "checkpointoutputprefix": str(base / "checkpoint"),
            # Flyte's value for "no previous attempt": two quotes, which flytekit reads as None.
            "prevcheckpointprefix": prev or '""',
            "perretryuniquekey": "a"
            + re.sub(r"[^A-Za-z0-9_]+", "_", f"{d.execution}_{d.node_id}")
            + f"_{d.attempt}",
        }
        if "tasktemplatepath" in used.lower():
            # The task's own plaitidl template (not Flyte's: its bytes would misparse).
            (base / "task.pb").write_bytes(d.task.SerializeToString())
            values["tasktemplatepath"] = str(base / "task.pb")
        return values

    async def _run_process(self, d: Dispatch) -> Outcome:
        target = d.task.process
        base = self._blobs.folder(*d.blob_parts)
        input_path = base / "inputs.pb"
        input_path.write_bytes(d.inputs.SerializeToString())
        out_dir = base / "out"
        out_dir.mkdir()
        values = self._placeholders(
            d, base, " ".join([*target.command, *target.args, *target.env.values()])
        )
        try:
            argv = [_render(a, values, d.inputs) for a in [*target.command, *target.args]]
            extra = {k: _render(v, values, d.inputs) for k, v in target.env.items()}
        except _BadInputError as exc:
            return errors_pb2.ExecutionError(
                code="BadPlaceholder", message=str(exc), kind=errors_pb2.ExecutionError.KIND_USER
            )
        env = {**os.environ, **_identity_env(d), **extra}
        if not argv or (
            shutil.which(argv[0], path=env.get("PATH")) is None and not Path(argv[0]).is_file()
        ):
            return system_error("CommandNotFound", f"command not found: {argv[:1]}")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                cwd=str(base),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            return system_error("ProcessStartFailed", str(exc))
        self._procs[d.assignment_id] = proc
        tail = bytearray()
        try:
            await asyncio.gather(_forward(proc.stdout, None), _forward(proc.stderr, tail))
            await proc.wait()
        finally:
            self._procs.pop(d.assignment_id, None)
        return _read_process_outcome(out_dir, proc.returncode or 0, bytes(tail))

    def cancel(self, assignment_ids: Sequence[str]) -> None:
        for aid in assignment_ids:
            proc = self._procs.get(aid)
            if proc is not None and proc.returncode is None:
                proc.kill()

    async def stop(self) -> None:
        self.cancel(list(self._procs))
        for t in list(self._tasks):
            t.cancel()


def _read_process_outcome(out_dir: Path, returncode: int, stderr: bytes) -> Outcome:
    present = [n for n in ("outputs.pb", "futures.pb", "error.pb") if (out_dir / n).exists()]
    tail = stderr.decode(errors="replace")[-2000:].strip()
    if "error.pb" in present:
        err = errors_pb2.ExecutionError()
        try:
            err.ParseFromString((out_dir / "error.pb").read_bytes())
        except Exception as exc:  # a garbled error file is still the task's failure
            return errors_pb2.ExecutionError(
                code="BadErrorFile",
                message=f"error.pb is not an ExecutionError: {exc}",
                kind=errors_pb2.ExecutionError.KIND_USER,
            )
        if not err.kind:
            err.kind = errors_pb2.ExecutionError.KIND_USER
        return err
    if returncode != 0:
        return system_error("ProcessFailed", f"process exited with {returncode}: {tail}")
    if len(present) != 1:
        return errors_pb2.ExecutionError(
            code="BadProcessOutput",
            message=(
                "a process target must write exactly one of outputs.pb, futures.pb or error.pb; "
                f"found {present or 'none'}"
            ),
            kind=errors_pb2.ExecutionError.KIND_USER,
        )
    data = (out_dir / present[0]).read_bytes()
    try:
        if present[0] == "outputs.pb":
            return literals_pb2.LiteralMap.FromString(data)
        return dynamic_job_pb2.DynamicJobSpec.FromString(data)
    except Exception as exc:
        return errors_pb2.ExecutionError(
            code="BadProcessOutput",
            message=f"{present[0]} does not parse: {exc}",
            kind=errors_pb2.ExecutionError.KIND_USER,
        )
