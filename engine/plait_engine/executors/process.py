"""Runs process targets as local child processes."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from plaitidl.core.v1 import dynamic_job_pb2, errors_pb2, literals_pb2

from plait_engine.blob import BlobStore
from plait_engine.executors import Dispatch, Outcome, Result, ResultSink, system_error


def _substitute(text: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


class ProcessExecutor:
    """Runs process targets as local child processes.

    The engine writes ``inputs.pb`` and creates an output folder; the process writes exactly
    one of ``outputs.pb``, ``futures.pb`` or ``error.pb`` there. A non-zero exit without
    ``error.pb`` is a system error.
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

    async def _run_process(self, d: Dispatch) -> Outcome:
        target = d.task.process
        base = self._blobs.folder(*d.blob_parts)
        input_path = base / "inputs.pb"
        input_path.write_bytes(d.inputs.SerializeToString())
        out_dir = base / "out"
        out_dir.mkdir()
        values = {"{{.input}}": str(input_path), "{{.outputPrefix}}": str(out_dir)}
        argv = [_substitute(a, values) for a in [*target.command, *target.args]]
        env = dict(os.environ)
        env.update({k: _substitute(v, values) for k, v in target.env.items()})
        if not argv or (
            shutil.which(argv[0], path=env.get("PATH")) is None and not Path(argv[0]).is_file()
        ):
            return system_error("CommandNotFound", f"command not found: {argv[:1]}")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                cwd=str(base),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            return system_error("ProcessStartFailed", str(exc))
        self._procs[d.assignment_id] = proc
        try:
            _, stderr = await proc.communicate()
        finally:
            self._procs.pop(d.assignment_id, None)
        return _read_process_outcome(out_dir, proc.returncode or 0, stderr)

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
