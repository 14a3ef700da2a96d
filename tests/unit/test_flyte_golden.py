"""Golden tests of the flyteidl → plaitidl translation, without flytekit.

The fixtures in ``tests/golden/flyte`` were written once by flytekit (``make_fixtures.py``):
a ``pyflyte package`` of ``examples/flyte``, the dynamic job specs two of its dynamics yield,
a dataclass output, a task's inputs and two error documents. Each translates to the text in
``<fixture>.expected.txtpb``; ``PLAIT_UPDATE_GOLDEN=1`` rewrites those files.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path

import msgpack
import pytest
from flyteidl.core import dynamic_job_pb2 as fdj
from flyteidl.core import errors_pb2 as fe
from flyteidl.core import literals_pb2 as fl
from google.protobuf import text_format
from google.protobuf.message import Message
from plait.flyte import Options, Translation, read_package, to_flyte, to_plait, translate_package
from plaitidl.core.v1 import errors_pb2, literals_pb2, tasks_pb2

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "flyte"
UPDATE = os.environ.get("PLAIT_UPDATE_GOLDEN") == "1"
OPTS = Options(
    version="v1",
    python="/envs/flyte/bin/python",
    envs={"other-image:2": "/envs/other/bin/python"},
    sources=("/src",),
)


@functools.cache
def examples() -> Translation:
    return translate_package(read_package(GOLDEN / "examples.tgz"), OPTS)


def task(name: str) -> tasks_pb2.TaskTemplate:
    found = [t for t in examples().request.tasks if t.id.name == name]
    assert found, f"no task {name} in examples.tgz"
    return found[0]


def check(stem: str, msg: Message) -> None:
    text = text_format.MessageToString(msg)
    path = GOLDEN / f"{stem}.expected.txtpb"
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"no {path.name}; run with PLAIT_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{stem} differs from {path.name}"


def test_package() -> None:
    result = examples()
    assert result.notices == []
    check("examples", result.request)


def _stem(path: Path) -> tuple[str, str]:
    name, kind, _ = path.name.rsplit(".", 2)
    return name, kind


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.futures.pb")), ids=lambda p: p.name)
def test_dynamic_job_spec(path: Path) -> None:
    name, _ = _stem(path)
    spec = fdj.DynamicJobSpec.FromString(path.read_bytes())
    out = to_plait(spec, options=OPTS, generator=task(name))
    check(path.name.removesuffix(".pb"), out)
    # Every embedded template has a content version, and the references follow it.
    embedded = {(t.id.name, t.id.version) for t in out.tasks}
    assert all(re.fullmatch(r"v1\+[0-9a-f]{16}", v) for _, v in embedded)
    assert all(re.fullmatch(r"v1\+[0-9a-f]{16}", w.id.version) for w in out.subworkflows)
    refs = {(n.task_node.task_id.name, n.task_node.task_id.version) for n in out.nodes}
    assert refs - {("", "")} <= embedded
    # The same futures translate to the same spec (a recursion settles on one version).
    assert to_plait(spec, options=OPTS, generator=task(name)) == out


@pytest.mark.parametrize(
    "path",
    sorted([*GOLDEN.glob("*.outputs.pb"), *GOLDEN.glob("*.inputs.pb")]),
    ids=lambda p: p.name,
)
def test_literals_round_trip(path: Path) -> None:
    name, kind = _stem(path)
    side = task(name).interface.outputs if kind == "outputs" else task(name).interface.inputs
    types = {v.name: v.type for v in side.variables}
    flyte = fl.LiteralMap.FromString(path.read_bytes())
    plait = to_plait(flyte, types=types)
    check(path.name.removesuffix(".pb"), plait)
    back = to_flyte(plait)
    assert set(back.literals) == set(flyte.literals)
    for k, lit in flyte.literals.items():
        if lit.scalar.binary.tag == "msgpack":  # same document; field order may differ
            got = msgpack.unpackb(back.literals[k].scalar.binary.value)
            assert got == msgpack.unpackb(lit.scalar.binary.value)
    assert to_plait(back, types=types) == plait


def test_dataclass_output_is_a_record_in_declaration_order() -> None:
    types = {
        v.name: v.type for v in task("flyte_examples.kinds.make_point").interface.outputs.variables
    }
    record = types["o0"].record_type
    assert record.name == "Point"
    # Fields without defaults in declaration order (the JSON schema's `required`), then by name.
    assert [f.name for f in record.fields] == [
        "name", "inner", "color", "extra", "maybe", "note", "score"
    ]  # fmt: skip
    lm = fl.LiteralMap.FromString(
        (GOLDEN / "flyte_examples.kinds.make_point.outputs.pb").read_bytes()
    )
    point = to_plait(lm, types=types).literals["o0"]
    fields = {f.name: f.value for f in point.record.fields}
    assert fields["inner"].record.fields[0].value.scalar.primitive.integer == 4
    assert fields["color"].scalar.primitive.string_value == "green"
    assert fields["note"].scalar.union.value.scalar.blob.uri.endswith("note.txt")
    assert fields["maybe"].scalar.union.value.scalar.HasField("none_value")


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.error.pb")), ids=lambda p: p.name)
def test_error_documents(path: Path) -> None:
    out = to_plait(fe.ErrorDocument.FromString(path.read_bytes()))
    assert isinstance(out, errors_pb2.ExecutionError)
    # The trace (with its timestamp) goes to `details`, which the golden leaves out.
    assert "Traceback" in out.details and "raised at" in out.details
    out.ClearField("details")
    check(path.name.removesuffix(".pb"), out)


def test_error_kinds() -> None:
    def load(name: str) -> errors_pb2.ExecutionError:
        return to_plait(fe.ErrorDocument.FromString((GOLDEN / name).read_bytes()))  # type: ignore[no-any-return]

    plain, recoverable = load("value_error.error.pb"), load("recoverable.error.pb")
    assert plain.kind == recoverable.kind == errors_pb2.ExecutionError.KIND_USER
    # Flyte's rule: only a FlyteRecoverableException is retried, a ValueError is not.
    assert (plain.recoverable, recoverable.recoverable) == (False, True)
    assert plain.message == "ValueError: boom"


def test_task_environment_and_order() -> None:
    split = task("flyte_examples.merge_sort.split")
    assert [v.name for v in split.interface.outputs.variables] == ["o0", "o1", "o2", "o3"]
    cmd = list(split.process.command)
    assert cmd[:4] == ["/envs/flyte/bin/python", "-m", "plait.flyte", "exec"]
    assert cmd[cmd.index("--source") + 1] == "/src"
    assert cmd[-3:] == ["--template", "{{.taskTemplatePath}}", "--"]
    assert split.process.args[0] == "pyflyte-execute"
    assert split.process.image == "localimage:1"
    assert OPTS.python_for("other-image:2") == "/envs/other/bin/python"
    assert OPTS.python_for("other-image") == "/envs/flyte/bin/python"


def test_map_task_runs_one_element() -> None:
    square = next(t for t in examples().request.tasks if "map_square" in t.id.name)
    iface = {v.name: v.type for v in square.interface.inputs.variables}
    # `x` is mapped (one element per instance), `offset` is bound by the partial.
    assert iface["x"].simple and iface["offset"].simple
    out = square.interface.outputs.variables[0].type
    assert out.HasField("union_type")  # min_success_ratio < 1: Optional[int] per element


def test_no_flytekit_needed() -> None:
    examples()
    assert "flytekit" not in sys.modules


def test_literal_helpers_refuse_unknown_messages() -> None:
    with pytest.raises(TypeError):
        to_plait(literals_pb2.Literal())
    with pytest.raises(TypeError):
        to_flyte(fl.Literal())
