"""`File` and `Directory`: absolute URIs out, relative URIs from elsewhere refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from plait import Directory, File, PlaitTypeError, _runtime, _types, task
from plaitidl.core.v1 import errors_pb2, literals_pb2, types_pb2

_SINGLE = types_pb2.BlobType.BLOB_DIMENSIONALITY_SINGLE
_MULTIPART = types_pb2.BlobType.BLOB_DIMENSIONALITY_MULTIPART


@task
def size_of(report: File) -> int:
    return len(report.uri)


@task
def write_here(name: str) -> File:
    Path(name).write_text("out")
    return File(name)


def _blob(uri: str, dim: types_pb2.BlobType.BlobDimensionality.ValueType) -> literals_pb2.Literal:
    lit = literals_pb2.Literal()
    lit.scalar.blob.uri = uri
    lit.scalar.blob.type.dimensionality = dim
    return lit


RELATIVE = ["../../etc/passwd", "etc/passwd", "./x", "x.csv", "~/secrets", "file:x", ""]


@pytest.mark.parametrize("uri", RELATIVE)
def test_relative_uri_from_the_engine_is_refused_naming_the_variable(uri: str) -> None:
    with pytest.raises(PlaitTypeError, match=rf"^report: expected File, .*relative URI {uri!r}"):
        _types.to_python(_blob(uri, _SINGLE), File, var="report")
    with pytest.raises(PlaitTypeError, match=rf"^out: expected Directory, .*relative URI {uri!r}"):
        _types.to_python(_blob(uri, _MULTIPART), Directory, var="out")
    lt = _types.literal_type(File, where="report")
    with pytest.raises(PlaitTypeError, match=rf"^report: .*relative URI {uri!r} refused"):
        _types.to_python_by_type(_blob(uri, _SINGLE), lt, var="report")


def test_relative_uri_nested_names_the_path() -> None:
    lit = _types.to_literal(["/data/a.csv", "s3://b/k"], list[File], var="files")
    lit.collection.literals[1].scalar.blob.uri = "../b.csv"
    with pytest.raises(PlaitTypeError, match=r"^files\[1\]: expected File.*relative URI '\.\./b"):
        _types.to_python(lit, list[File], var="files")
    opt = _types.to_literal(["/data/a.csv", "s3://b/k"], list[File] | None, var="files")
    opt.scalar.union.value.collection.literals[1].scalar.blob.uri = "../b.csv"
    with pytest.raises(PlaitTypeError, match=r"^files\[1\]: .*relative URI"):
        _types.to_python(opt, list[File] | None, var="files")


@pytest.mark.parametrize(
    "uri",
    ["/data/a.csv", "file:///data/a.csv", "s3://bucket/k", "gs://b/k", "plait://exec/n0/o0"],
)
def test_absolute_paths_and_uris_with_a_scheme_are_accepted(uri: str) -> None:
    got = _types.to_python(_blob(uri, _SINGLE), File, var="report")
    assert isinstance(got, File)
    assert got.uri == (Path(uri).as_uri() if uri.startswith("/") else uri)
    d = _types.to_python(_blob(uri, _MULTIPART), Directory, var="out")
    assert isinstance(d, Directory)


def test_a_worker_refuses_a_relative_input_without_retrying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    inputs = literals_pb2.LiteralMap(literals={"report": _blob("../../etc/passwd", _SINGLE)})
    err = _runtime.execute(size_of.template, inputs)
    assert isinstance(err, errors_pb2.ExecutionError)
    assert err.recoverable is False
    assert err.message.startswith("report: expected File")
    assert "relative URI '../../etc/passwd' refused" in err.message
    ok = literals_pb2.LiteralMap(literals={"report": _blob("/etc/passwd", _SINGLE)})
    out = _runtime.execute(size_of.template, ok)
    assert isinstance(out, literals_pb2.LiteralMap)
    assert out.literals["o0"].scalar.primitive.integer == len("file:///etc/passwd")


def test_a_file_made_in_user_code_is_absolute_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    f = File("out.txt")
    assert f.uri == (tmp_path / "out.txt").as_uri()
    os.chdir("/")  # the value keeps its meaning once the working directory changes
    assert f.path == str(tmp_path / "out.txt")
    assert _types.to_literal("rel/x", Directory, var="d").scalar.blob.uri == "file:///rel/x"
    monkeypatch.chdir(tmp_path)
    # A task returning File("out.txt") sends an absolute URI, which any reader accepts.
    inputs = literals_pb2.LiteralMap(literals={"name": _types.to_literal("out.txt", str, var="n")})
    out = _runtime.execute(write_here.template, inputs)
    assert isinstance(out, literals_pb2.LiteralMap)
    uri = out.literals["o0"].scalar.blob.uri
    assert uri == (tmp_path / "out.txt").as_uri()
    assert _types.to_python(out.literals["o0"], File, var="o0") == File(uri)
