"""The boundary shim: ``python -m plait.flyte exec [options] -- pyflyte-execute ...``.

It runs in the task's own Python environment, as the process target of an imported Flyte
task. The engine has substituted the placeholders: ``--inputs`` is a plaitidl ``LiteralMap``
and ``--output-prefix`` the folder the engine reads a plaitidl answer from. The shim writes the
Flyte form of the inputs next to them, runs flytekit's entry point in this process with its
own paths, and converts what flytekit wrote (``outputs.pb``, ``futures.pb`` or ``error.pb``)
back to plaitidl. flyteidl bytes never reach the engine and plaitidl bytes never reach
flytekit. flytekit's logs go where this process's stdout and stderr go.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

from flyteidl.core import dynamic_job_pb2 as fdj
from flyteidl.core import errors_pb2 as fe
from flyteidl.core import literals_pb2 as fl
from plaitidl.core.v1 import errors_pb2 as pe
from plaitidl.core.v1 import literals_pb2 as pl
from plaitidl.core.v1 import tasks_pb2 as ptk

from plait.flyte._context import Context
from plait.flyte._dynamic import dynamic_to_plait, error_to_plait
from plait.flyte._errors import FlyteRefusedError
from plait.flyte._ids import Options, base_version
from plait.flyte._literals import literal_map_to_flyte, literal_map_to_plait
from plait.flyte._tasks import ENTRY_POINTS, entry_argv, map_bound_inputs
from plait.flyte._types import types_of

# Where flytekit reads the task's identity; the shim gives it the version flytekit serialized.
_VERSION_VARS = ("FLYTE_INTERNAL_TASK_VERSION", "FLYTE_INTERNAL_VERSION")
_ARRAY_INDEX_VARS = ("BATCH_JOB_ARRAY_INDEX_VAR_NAME", "BATCH_JOB_ARRAY_INDEX_OFFSET")


class ShimUsageError(Exception):
    """The shim was called with arguments it cannot run."""


def parse(argv: list[str]) -> tuple[Options, str | None, list[str]]:
    """The shim's options, the template path and flytekit's arguments (after ``--``)."""
    if "--" not in argv:
        raise ShimUsageError(
            "give flytekit's command after '--': exec [options] -- pyflyte-execute ..."
        )
    cut = argv.index("--")
    p = argparse.ArgumentParser(prog="plait flyte exec", add_help=False)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--source", action="append", default=[])
    p.add_argument("--template")
    ns = p.parse_args(argv[:cut])
    envs = dict(e.split("=", 1) for e in ns.env if "=" in e)
    opts = Options(python=ns.python, envs=envs, sources=tuple(ns.source))
    return opts, ns.template, entry_argv(argv[cut + 1 :])


def _option(argv: list[str], name: str) -> str:
    try:
        return argv[argv.index(name) + 1]
    except (ValueError, IndexError):
        raise ShimUsageError(f"flytekit's command has no {name} VALUE: {argv}") from None


def _replace(argv: list[str], values: dict[str, str]) -> list[str]:
    out = list(argv)
    for name, value in values.items():
        out[out.index(name) + 1] = value
    return out


def flyte_inputs(inputs: pl.LiteralMap, bound: set[str] | None) -> fl.LiteralMap:
    """The task's inputs for flytekit; a map task's element is handed over as a 1-list.

    flytekit's map task reads the whole list of each mapped input and picks its own element
    by the array index variable, which the shim leaves unset (index 0).
    """
    out = literal_map_to_flyte(inputs)
    if bound is not None:
        for name, lit in out.literals.items():
            if name not in bound:
                wrapped = fl.Literal()
                wrapped.collection.literals.add().CopyFrom(lit)
                out.literals[name].CopyFrom(wrapped)
    return out


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def convert_results(flyte_out: Path, out: Path, template: ptk.TaskTemplate, opts: Options) -> None:
    """Translate flytekit's answer in `flyte_out` into the engine's folder `out`."""
    errors = sorted(flyte_out.glob("error*.pb"))
    if errors:
        doc = fe.ErrorDocument.FromString(errors[0].read_bytes())
        _write(out / "error.pb", error_to_plait(doc).SerializeToString())
        return
    ctx = Context(f"task {template.id.name!r}")
    if (flyte_out / "futures.pb").exists():
        spec = fdj.DynamicJobSpec.FromString((flyte_out / "futures.pb").read_bytes())
        converted = dynamic_to_plait(spec, template, opts, ctx)
        ctx.raise_refusals()
        _write(out / "futures.pb", converted.SerializeToString(deterministic=True))
    elif (flyte_out / "outputs.pb").exists():
        lm = fl.LiteralMap.FromString((flyte_out / "outputs.pb").read_bytes())
        types = types_of(template.interface.outputs)
        result = literal_map_to_plait(lm, types, ctx, "outputs")
        ctx.raise_refusals()
        for n in ctx.notices:
            print(f"plait.flyte: {n}", file=sys.stderr)
        _write(out / "outputs.pb", result.SerializeToString(deterministic=True))


def _call_flytekit(argv: list[str]) -> int:
    from flytekit.bin.entrypoint import _pass_through

    try:
        _pass_through.main(args=argv, prog_name="pyflyte", standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def _prepare_environment(opts: Options, map_task: bool) -> None:
    sys.path[:0] = [s for s in opts.sources if s not in sys.path]
    if opts.sources:
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [*opts.sources, *filter(None, [os.environ.get("PYTHONPATH")])]
        )
    for var in _VERSION_VARS:
        if var in os.environ:
            os.environ[var] = base_version(os.environ[var])
    if map_task:
        for var in _ARRAY_INDEX_VARS:
            os.environ.pop(var, None)


def _refused(out: Path, exc: FlyteRefusedError) -> None:
    err = pe.ExecutionError(
        code="FlyteRefused",
        message=str(exc),
        kind=pe.ExecutionError.KIND_USER,
        recoverable=False,
        details="\n".join(map(str, exc.refusals)),
    )
    _write(out / "error.pb", err.SerializeToString())


def run(argv: list[str]) -> int:
    """`execute` with the shim's own command line (``[options] -- pyflyte-execute ...``)."""
    try:
        opts, template_path, flyte_argv = parse(argv)
    except ShimUsageError as exc:
        print(f"plait flyte exec: {exc}", file=sys.stderr)
        return 2
    return execute(opts, template_path, flyte_argv)


def execute(opts: Options, template_path: str | None, flyte_argv: list[str]) -> int:
    """Run flytekit's entry point between plait's files; the process's exit code."""
    flyte_argv = entry_argv(flyte_argv)
    try:
        if not flyte_argv or flyte_argv[0] not in ENTRY_POINTS:
            raise ShimUsageError(f"expected one of {ENTRY_POINTS} after '--', got {flyte_argv[:1]}")
        inputs_path = Path(_option(flyte_argv, "--inputs"))
        out = Path(_option(flyte_argv, "--output-prefix"))
    except ShimUsageError as exc:
        print(f"plait flyte exec: {exc}", file=sys.stderr)
        return 2
    template = ptk.TaskTemplate()
    if template_path and Path(template_path).is_file():
        template.ParseFromString(Path(template_path).read_bytes())
    bound = map_bound_inputs(flyte_argv)
    work = Path(tempfile.mkdtemp(prefix="flyte-", dir=inputs_path.parent))
    try:
        inputs = pl.LiteralMap.FromString(inputs_path.read_bytes())
        _write(work / "inputs.pb", flyte_inputs(inputs, bound).SerializeToString())
        (work / "out").mkdir()
        _prepare_environment(opts, bound is not None)
        code = _call_flytekit(
            _replace(
                flyte_argv,
                {"--inputs": str(work / "inputs.pb"), "--output-prefix": str(work / "out")},
            )
        )
        convert_results(work / "out", out, template, opts)
    except FlyteRefusedError as exc:
        _refused(out, exc)
        return 0
    except Exception:  # the boundary itself broke: a system error the engine retries
        traceback.print_exc()
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return code
