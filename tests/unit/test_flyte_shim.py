"""The shim's boundary work without flytekit: arguments, inputs, and flytekit's answers.

flytekit's answers are the fixtures it wrote once (``tests/golden/flyte``); the shim turns
each into the one plaitidl file the engine reads.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from flyteidl.core import literals_pb2 as fl
from plait._errors import PlaitError
from plait.flyte import Options, read_package, translate_package
from plait.flyte._exec import ShimUsageError, convert_results, flyte_inputs, parse, run
from plait.flyte._ids import base_version, content_version
from plait.flyte._inputs import coerce, parse_pairs
from plaitidl.core.v1 import (
    dynamic_job_pb2,
    errors_pb2,
    interface_pb2,
    literals_pb2,
    tasks_pb2,
    types_pb2,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "flyte"


def _task(name: str) -> tasks_pb2.TaskTemplate:
    request = translate_package(
        read_package(GOLDEN / "examples.tgz"), Options(version="v1")
    ).request
    return next(t for t in request.tasks if t.id.name == name)


def test_parse_splits_options_from_flytekit_arguments() -> None:
    opts, template, argv = parse(
        [
            *(
                "--python",
                "/py",
                "--env",
                "img:1=/other",
                "--source",
                "/src",
                "--template",
                "/t.pb",
            ),
            *("--", "pyflyte-fast-execute", "--dest-dir", "/root", "--", "pyflyte-execute", "--x"),
        ]
    )
    assert (opts.python, dict(opts.envs), opts.sources, template) == (
        "/py", {"img:1": "/other"}, ("/src",), "/t.pb"
    )  # fmt: skip
    assert argv == ["pyflyte-execute", "--x"]  # the fast wrapper is dropped
    with pytest.raises(ShimUsageError):
        parse(["--python", "/py"])


def test_bad_command_lines_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--", "python", "x.py"]) == 2
    assert run(["--", "pyflyte-execute", "--inputs", "/x"]) == 2
    err = capsys.readouterr().err
    assert "expected one of" in err and "--output-prefix" in err


def test_map_task_inputs_are_one_element_lists() -> None:
    lm = literals_pb2.LiteralMap()
    lm.literals["x"].scalar.primitive.integer = 7
    lm.literals["offset"].scalar.primitive.integer = 1
    out = flyte_inputs(lm, {"offset"})
    assert [x.scalar.primitive.integer for x in out.literals["x"].collection.literals] == [7]
    assert out.literals["offset"].scalar.primitive.integer == 1
    assert flyte_inputs(lm, None).literals["x"].scalar.primitive.integer == 7


def test_offloaded_inputs_are_read_from_the_blob_store(tmp_path: Path) -> None:
    inner = literals_pb2.Literal()
    inner.scalar.primitive.string_value = "big"
    path = tmp_path / "value.pb"
    path.write_bytes(inner.SerializeToString())
    lm = literals_pb2.LiteralMap()
    lm.literals["s"].offloaded.uri = path.as_uri()
    assert flyte_inputs(lm, None).literals["s"].scalar.primitive.string_value == "big"


def _answer(tmp_path: Path, fixture: str, as_name: str) -> tuple[Path, Path]:
    flyte_out, out = tmp_path / "flyte", tmp_path / "out"
    flyte_out.mkdir()
    out.mkdir()
    (flyte_out / as_name).write_bytes((GOLDEN / fixture).read_bytes())
    return flyte_out, out


def test_futures_become_a_plait_spec(tmp_path: Path) -> None:
    name = "flyte_examples.merge_sort.merge_sort_remotely"
    flyte_out, out = _answer(tmp_path, f"{name}.futures.pb", "futures.pb")
    convert_results(flyte_out, out, _task(name), Options(version="v1"))
    assert sorted(p.name for p in out.iterdir()) == ["futures.pb"]
    spec = dynamic_job_pb2.DynamicJobSpec.FromString((out / "futures.pb").read_bytes())
    assert {t.id.name.rsplit(".", 1)[-1] for t in spec.tasks} >= {"split", "merge"}
    assert spec.outputs[0].var == "o0"


def test_outputs_become_plait_literals(tmp_path: Path) -> None:
    name = "flyte_examples.kinds.make_point"
    flyte_out, out = _answer(tmp_path, f"{name}.outputs.pb", "outputs.pb")
    convert_results(flyte_out, out, _task(name), Options(version="v1"))
    lm = literals_pb2.LiteralMap.FromString((out / "outputs.pb").read_bytes())
    assert lm.literals["o0"].HasField("record")


def test_error_documents_become_plait_errors(tmp_path: Path) -> None:
    flyte_out, out = _answer(tmp_path, "value_error.error.pb", "error.pb")
    convert_results(flyte_out, out, tasks_pb2.TaskTemplate(), Options())
    err = errors_pb2.ExecutionError.FromString((out / "error.pb").read_bytes())
    assert err.code == "USER:RuntimeError" and not err.recoverable


def test_an_output_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    lm = fl.LiteralMap()
    lm.literals["o0"].scalar.binary.value = b"\x81\xa1x\xa1y"  # msgpack {"x": "y"}
    lm.literals["o0"].scalar.binary.tag = "msgpack"
    flyte_out, out = tmp_path / "flyte", tmp_path / "out"
    flyte_out.mkdir()
    out.mkdir()
    (flyte_out / "outputs.pb").write_bytes(lm.SerializeToString())
    from plait.flyte import FlyteRefusedError

    with pytest.raises(FlyteRefusedError, match=r"outputs\.o0\.x: is not a field"):
        convert_results(flyte_out, out, _task("flyte_examples.kinds.make_point"), Options())


def test_content_versions_replace_each_other() -> None:
    v = content_version("v1", "ab" * 32)
    assert v == "v1+" + "ab" * 8
    assert base_version(v) == "v1"
    assert content_version(v, "cd" * 32) == "v1+" + "cd" * 8


def test_command_line_inputs() -> None:
    values = parse_pairs(["--n", "3", "--xs=[1, 2]", "--s", "Pear", "--", "--when", "2024-01-02"])
    assert values == {"n": 3, "xs": [1, 2], "s": "Pear", "when": "2024-01-02"}
    with pytest.raises(PlaitError):
        parse_pairs(["n", "3"])
    with pytest.raises(PlaitError):
        parse_pairs(["--n"])
    t = types_pb2.LiteralType
    variables = interface_pb2.VariableMap(
        variables=[
            interface_pb2.Variable(name="when", type=t(simple=types_pb2.SIMPLE_TYPE_DATETIME)),
            interface_pb2.Variable(name="s", type=t(simple=types_pb2.SIMPLE_TYPE_STRING)),
            interface_pb2.Variable(name="d", type=t(simple=types_pb2.SIMPLE_TYPE_DURATION)),
        ]
    )
    got = coerce(variables, {"when": "2024-01-02", "s": 12, "d": 90})
    assert got == {
        "when": datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC),
        "s": "12",
        "d": datetime.timedelta(seconds=90),
    }
