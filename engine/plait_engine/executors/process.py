"""Runs process targets as local child processes.

The engine writes the inputs, creates the attempt's folders, substitutes Flyte-style
placeholders in the command, args and env, sets the ``FLYTE_INTERNAL_*`` identity variables,
runs the program and reads back exactly one of ``outputs.pb``, ``futures.pb`` or ``error.pb``.

Only programs the operator allowed run (`ProcessPolicy`), with a scrubbed environment
(`PASSED_ENV`, the target's own env and the identity variables), in the attempt's folder, and
optionally as another user (`RunAs`).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from plaitidl.core.v1 import dynamic_job_pb2, errors_pb2, literals_pb2
from plaitidl.service.v1 import execution_service_pb2 as es

from plait_engine.blob import ObjectStore
from plait_engine.config import ConfigError
from plait_engine.executors import Dispatch, Outcome, Result, ResultSink, system_error
from plait_engine.executors.attempt_files import AttemptDir, AttemptFiles
from plait_engine.executors.logs import LogWriter

# Placeholders as Flyte's container plugin writes them: `{{.name}}` or `{{ $name }}`, any case.
_PLACEHOLDER = re.compile(r"\{\{\s*[.$]([A-Za-z]+)\s*\}\}")
_INPUT_VALUE = re.compile(r"\{\{\s*[.$]inputs\.([^}\s]+)\s*\}\}", re.IGNORECASE)
_STREAM_TAIL = 2000


# Variables of the engine's environment a process target sees; everything else (tokens,
# database URLs, cloud credentials of the engine) stays out. HOME, USER and LOGNAME are those
# of the user the target runs as.
PASSED_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


def resolve_program(command: str, path: str | None = None) -> str | None:
    """The program a command runs: an absolute path as written (normalized), a bare name
    found on `path` (the engine's ``PATH`` by default), a relative path as written, or None
    when a bare name is not found."""
    if "/" in command:
        return os.path.normpath(command) if command.startswith("/") else command
    found = shutil.which(command, path=path if path is not None else os.environ.get("PATH"))
    return os.path.normpath(os.path.abspath(found)) if found else None


@dataclass(frozen=True)
class ProcessPolicy:
    """Which programs process targets may run.

    Patterns starting with ``/`` are matched (`fnmatch`, case-sensitive, ``*`` also matches
    ``/``) against the absolute path the program resolves to (a bare name through the engine's
    ``PATH``, never the target's); other patterns against the command as written. So ``*``
    allows everything, ``/opt/tasks/*`` programs under /opt/tasks, and with absolute patterns
    only, a relative path or a name not on ``PATH`` is refused. A path with a ``..`` part is
    always refused (it could leave an allowed folder). No pattern: no process target runs.

    Attributes:
        patterns: The allowed patterns.
    """

    patterns: tuple[str, ...] = ()

    @classmethod
    def allow_all(cls) -> ProcessPolicy:
        """Everything: the embedded engine runs its user's own commands."""
        return cls(("*",))

    def refusal(self, command: str, path: str | None = None) -> str | None:
        """Why a command (``command[0]``) may not run, or None when it may."""
        if not self.patterns:
            return (
                f"process targets are off on this engine: {command!r} may not run "
                "(the operator allows commands with --allow-process PATTERN)"
            )
        if any(not p.startswith("/") and fnmatchcase(command, p) for p in self.patterns):
            return None
        if ".." in PurePosixPath(command).parts:
            return f"{command!r} has a '..' part; give the program's path without it"
        program = resolve_program(command, path)
        if program is None:
            return f"{command!r} is not found on the engine's PATH"
        if not program.startswith("/"):
            return f"{command!r} is a relative path; the allowed commands are absolute paths"
        if any(p.startswith("/") and fnmatchcase(program, p) for p in self.patterns):
            return None
        allowed = ", ".join(self.patterns)
        shown = command if program == command else f"{command} ({program})"
        return f"{shown} is not an allowed process command (allowed: {allowed})"


@dataclass(frozen=True)
class RunAs:
    """The user process targets run as.

    Attributes:
        name: User name.
        uid: User id.
        gid: Primary group id.
        groups: Supplementary group ids.
        home: Home folder.
        switch: Whether it differs from the engine's user (the engine must be root).
    """

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    switch: bool

    @classmethod
    def lookup(cls, user: str | None) -> RunAs:
        """The engine's own user (None), or another one by name or uid.

        Raises:
            ConfigError: No such user, or the engine may not switch to it.
        """
        euid = os.geteuid()
        if user is None:
            try:
                pw = pwd.getpwuid(euid)
            except KeyError:  # a uid without a passwd entry (containers)
                home = os.environ.get("HOME", "/")
                return cls(str(euid), euid, os.getegid(), (), home, False)
            return cls(pw.pw_name, pw.pw_uid, pw.pw_gid, (), pw.pw_dir, False)
        try:
            pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except KeyError:
            raise ConfigError(f"process_user: no user {user!r}") from None
        switch = pw.pw_uid != euid
        if switch and euid != 0:
            raise ConfigError(
                f"process_user: the engine runs as uid {euid} and cannot start processes as "
                f"{user!r}; run the engine as root or leave process_user unset"
            )
        groups = tuple(os.getgrouplist(pw.pw_name, pw.pw_gid)) if switch else ()
        return cls(pw.pw_name, pw.pw_uid, pw.pw_gid, groups, pw.pw_dir, switch)

    def base_env(self) -> dict[str, str]:
        """The environment every process target starts from."""
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env.setdefault("PATH", os.defpath)
        env.update(HOME=self.home, USER=self.name, LOGNAME=self.name)
        return env


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


async def _forward(
    stream: asyncio.StreamReader | None,
    tail: bytearray | None,
    emit: Callable[[str], None],
) -> None:
    """Pass a child's output on line by line as it comes (a line longer than 64 KiB in
    pieces), keeping the last bytes in `tail` for the error message."""
    if stream is None:
        return
    partial = b""
    while chunk := await stream.read(1 << 16):
        if tail is not None:
            tail += chunk
            del tail[:-_STREAM_TAIL]
        head, newline, partial = (partial + chunk).rpartition(b"\n")
        if newline:
            emit(head.decode(errors="replace"))
        if len(partial) > 1 << 16:
            emit(partial.decode(errors="replace"))
            partial = b""
    if partial:
        emit(partial.decode(errors="replace"))


def _to_stderr(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class ProcessExecutor:
    """Runs process targets as local child processes.

    The engine writes ``inputs.pb`` and creates an output folder; the process writes exactly
    one of ``outputs.pb``, ``futures.pb`` or ``error.pb`` there. A non-zero exit without
    ``error.pb`` is a system error. Flyte's placeholders are substituted in the command, args
    and env values (`{{.input}}`, `{{.inputPrefix}}`, `{{.outputPrefix}}`,
    `{{.rawOutputDataPrefix}}`, `{{.checkpointOutputPrefix}}`, `{{.prevCheckpointPrefix}}`,
    `{{.perRetryUniqueKey}}`, `{{.taskTemplatePath}}`, `{{.inputs.NAME}}`), the
    ``FLYTE_INTERNAL_*`` / ``FLYTE_ATTEMPT_NUMBER`` identity variables are set, and the
    child's stdout and stderr become the attempt's log (`plait logs`), line by line as they
    come (without a log writer: copied to the engine's stderr).

    A program the policy does not allow fails its node with a user error that is not retried
    (``PermissionDenied``): the check runs again here, after the placeholders are substituted,
    for targets registered before the policy changed and for those embedded in dynamic specs.

    Each attempt runs in its own folder of the object store when the store is a folder, and in
    a local staging folder uploaded afterwards when it is remote (see `AttemptFiles`).

    Args:
        blobs: Where attempts' files are kept.
        slots: Processes run at once (default: the number of CPUs, at least 2).
        policy: The programs allowed (default: every one, for the embedded engine).
        run_as: The user processes run as (default: the engine's).
        logs: Where the children's output goes (None: the engine's stderr).
        staging: Where staging folders go when the store is remote (default: the system's
            temporary folder).
    """

    def __init__(
        self,
        blobs: ObjectStore,
        slots: int | None = None,
        *,
        policy: ProcessPolicy | None = None,
        run_as: RunAs | None = None,
        logs: LogWriter | None = None,
        staging: Path | None = None,
    ) -> None:
        self._files = AttemptFiles(blobs, staging)
        self._logs = logs
        self.policy = policy if policy is not None else ProcessPolicy.allow_all()
        self._run_as = run_as if run_as is not None else RunAs.lookup(None)
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

    def _placeholders(self, d: Dispatch, att: AttemptDir, used: str) -> dict[str, str]:
        """The value of every placeholder, by lower-case name; folders are created."""
        base, prev = att.base, att.prev
        (base / "raw").mkdir()
        (base / "checkpoint").mkdir()
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
        try:
            att = await asyncio.to_thread(self._files.open, d.blob_parts, d.attempt)
        except Exception as exc:
            return system_error("AttemptFolder", f"preparing the attempt's folder failed: {exc}")
        try:
            outcome = await self._run_in(d, att)
        except BaseException:
            await asyncio.to_thread(self._files.discard, att)
            raise
        return await asyncio.to_thread(self._files.finish, att, outcome)

    async def _run_in(self, d: Dispatch, att: AttemptDir) -> Outcome:
        target = d.task.process
        base = att.base
        input_path = base / "inputs.pb"
        input_path.write_bytes(d.inputs.SerializeToString())
        out_dir = base / "out"
        out_dir.mkdir()
        values = self._placeholders(
            d, att, " ".join([*target.command, *target.args, *target.env.values()])
        )
        try:
            argv = [_render(a, values, d.inputs) for a in [*target.command, *target.args]]
            extra = {k: _render(v, values, d.inputs) for k, v in target.env.items()}
        except _BadInputError as exc:
            return errors_pb2.ExecutionError(
                code="BadPlaceholder", message=str(exc), kind=errors_pb2.ExecutionError.KIND_USER
            )
        base_env = self._run_as.base_env()
        env = {**base_env, **_identity_env(d), **extra}
        if not argv:
            return system_error("CommandNotFound", "the process target has an empty command")
        refusal = self.policy.refusal(argv[0], base_env["PATH"])
        if refusal is not None:
            return errors_pb2.ExecutionError(
                code="PermissionDenied",
                message=f"process.command: {refusal}",
                kind=errors_pb2.ExecutionError.KIND_USER,
                recoverable=False,
            )
        # The program is found on the engine's PATH, not on one the target sets.
        program = resolve_program(argv[0], base_env["PATH"])
        if program is None or not (base / program).is_file():
            return system_error("CommandNotFound", f"command not found: {argv[:1]}")
        uid, gid, groups = self._identity(base)
        try:
            proc = await asyncio.create_subprocess_exec(
                program,
                *argv[1:],
                env=env,
                cwd=str(base),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
        except OSError as exc:
            return system_error("ProcessStartFailed", str(exc))
        self._procs[d.assignment_id] = proc
        tail = bytearray()
        try:
            await asyncio.gather(
                _forward(proc.stdout, None, self._emitter(d, es.LOG_STREAM_STDOUT)),
                _forward(proc.stderr, tail, self._emitter(d, es.LOG_STREAM_STDERR)),
            )
            await proc.wait()
        finally:
            self._procs.pop(d.assignment_id, None)
            if self._logs is not None:
                self._logs.ended(d.assignment_id)
        return _read_process_outcome(out_dir, proc.returncode or 0, bytes(tail))

    def _emitter(self, d: Dispatch, stream: int) -> Callable[[str], None]:
        logs = self._logs
        if logs is None:
            return _to_stderr
        aid = d.assignment_id
        return lambda text: logs.write(aid, stream, text)

    def _identity(self, base: Path) -> tuple[int | None, int | None, list[int] | None]:
        """User, group and groups starting the child as `run_as` (None: the engine's), who
        then owns the attempt's folders."""
        r = self._run_as
        if not r.switch:
            return None, None, None
        for folder in (base, base / "out", base / "raw", base / "checkpoint"):
            os.chown(folder, r.uid, r.gid)
        return r.uid, r.gid, list(r.groups)

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
