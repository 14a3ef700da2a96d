"""The SDK type engine: hints to LiteralTypes, values to Literals and back, CLI text."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import inspect
import typing
from typing import Annotated, Any, Optional, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plait._errors import PlaitTypeError, PlaitValueError
from plait._files import Directory, File
from plait._types import (
    literal_type,
    parse_text,
    parse_text_by_type,
    to_literal,
    to_literal_by_type,
    to_literal_map_by_type,
    to_python,
    to_python_by_type,
    type_repr,
)
from plaitidl.core.v1 import interface_pb2, literals_pb2, types_pb2

UTC = dt.UTC
I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=False)
DATETIMES = st.datetimes(
    min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(UTC)
)
TIMEDELTAS = st.timedeltas(
    min_value=dt.timedelta(days=-(10**6)), max_value=dt.timedelta(days=10**6)
)
JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | FLOATS | st.text()
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Size(enum.StrEnum):
    S = "s"
    L = "l"


class Level(enum.IntEnum):
    LOW = 1


@dataclasses.dataclass
class Inner:
    x: int
    tags: list[str]


@dataclasses.dataclass(frozen=True)
class Outer:
    inner: Inner
    maybe: Inner | None
    color: Color
    when: dt.datetime
    weights: dict[str, float]
    doc: dict[str, Any]
    label: str = "default"


@dataclasses.dataclass
class WithAnnotated:
    n: Annotated[int, "meta"]


@dataclasses.dataclass
class Recursive:
    child: Recursive | None


@dataclasses.dataclass
class BadField:
    s: set[int]


class NotADataclass:
    x: int


INNER = st.builds(Inner, x=I64, tags=st.lists(st.text(), max_size=3))
FILES = st.builds(
    File,
    st.sampled_from(
        ["s3://bucket/a.csv", "gs://b/k", "/tmp/data.csv", "rel/path.txt", "file:///x y"]
    ),
)

# (hint, strategy) for the round-trip property; every supported type appears.
CASES: list[tuple[object, st.SearchStrategy[Any]]] = [
    (int, I64),
    (float, FLOATS),
    (str, st.text()),
    (bool, st.booleans()),
    (bytes, st.binary()),
    (dt.datetime, DATETIMES),
    (dt.timedelta, TIMEDELTAS),
    (None, st.none()),
    (type(None), st.none()),
    (Optional[int], st.none() | I64),  # noqa: UP045 - the typing spelling is what is tested
    (int | None, st.none() | I64),
    (Union[int, str, float], I64 | st.text() | FLOATS),  # noqa: UP007
    (int | bool, I64 | st.booleans()),
    (list[int], st.lists(I64)),
    (typing.List[str], st.lists(st.text(), max_size=5)),  # noqa: UP006
    (list[list[float]], st.lists(st.lists(FLOATS, max_size=3), max_size=3)),
    (dict[str, int], st.dictionaries(st.text(), I64, max_size=5)),
    (
        dict[str, dict[str, bool]],
        st.dictionaries(
            st.text(), st.dictionaries(st.text(), st.booleans(), max_size=3), max_size=3
        ),
    ),
    (dict[str, Any], st.dictionaries(st.text(), JSON, max_size=4)),
    (Color, st.sampled_from(Color)),
    (Size, st.sampled_from(Size)),
    (Inner, INNER),
    (
        Outer,
        st.builds(
            Outer,
            inner=INNER,
            maybe=st.none() | INNER,
            color=st.sampled_from(Color),
            when=DATETIMES,
            weights=st.dictionaries(st.text(), FLOATS, max_size=3),
            doc=st.dictionaries(st.text(), JSON, max_size=3),
            label=st.text(),
        ),
    ),
    (list[Outer | None], st.lists(st.none(), max_size=2)),
    (File, FILES),
    (Directory, st.builds(Directory, st.sampled_from(["s3://bucket/dir/", "/tmp/d"]))),
    (Annotated[int, "doc"], I64),
    (WithAnnotated, st.builds(WithAnnotated, n=I64)),
]


def _json_equal(a: object, b: object) -> bool:
    """Equality where the struct's number type (int vs float) does not matter."""
    return bool(a == b)


@pytest.mark.parametrize(("hint", "strategy"), CASES, ids=lambda x: repr(x)[:40])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip(hint: object, strategy: st.SearchStrategy[Any], data: st.DataObject) -> None:
    value = data.draw(strategy)
    lit = to_literal(value, hint, var="v")
    assert isinstance(lit, literals_pb2.Literal)
    # The literal survives the wire too.
    lit = literals_pb2.Literal.FromString(lit.SerializeToString())
    back = to_python(lit, hint, var="v")
    assert back == value
    if hint is not dict[str, Any]:
        # bool stays bool under int | bool, float stays float under int | str | float, etc.
        assert type(back) is type(value)


def test_union_literal_names_the_variant() -> None:
    lit = to_literal(True, int | bool, var="v")
    assert lit.scalar.union.type.simple == types_pb2.SIMPLE_TYPE_BOOLEAN
    lit = to_literal(3, float | int, var="v")
    assert lit.scalar.union.type.simple == types_pb2.SIMPLE_TYPE_INTEGER
    lit = to_literal(3, float | None, var="v")  # an int fits float when nothing matches exactly
    assert lit.scalar.union.type.simple == types_pb2.SIMPLE_TYPE_FLOAT
    assert to_python(lit, float | None, var="v") == 3.0
    lit = to_literal(["a"], list[int] | list[str], var="v")
    assert type_repr(lit.scalar.union.type) == "list[str]"


def test_literal_shapes() -> None:
    assert to_literal(None, None, var="v").scalar.HasField("none_value")
    assert to_literal(b"", bytes, var="v").scalar.HasField("binary")
    assert to_literal([], list[int], var="v").HasField("collection")
    assert to_literal({}, dict[str, int], var="v").HasField("map")
    assert to_literal(Color.RED, Color, var="v").scalar.primitive.string_value == "red"
    rec = to_literal(Inner(1, []), Inner, var="v").record
    assert [f.name for f in rec.fields] == ["x", "tags"]
    blob = to_literal(File("s3://b/k"), File, var="v").scalar.blob
    assert blob.uri == "s3://b/k"
    assert blob.type.dimensionality == types_pb2.BlobType.BLOB_DIMENSIONALITY_SINGLE
    naive = dt.datetime(2024, 1, 1, 12)
    back = to_python(to_literal(naive, dt.datetime, var="v"), dt.datetime, var="v")
    assert isinstance(back, dt.datetime)
    assert back == naive.replace(tzinfo=UTC)
    assert back.tzinfo is not None and back.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        (int, "int"),
        (float, "float"),
        (str, "str"),
        (bool, "bool"),
        (bytes, "bytes"),
        (dt.datetime, "datetime"),
        (dt.timedelta, "timedelta"),
        (None, "None"),
        (list[int], "list[int]"),
        (dict[str, float], "dict[str, float]"),
        (dict[str, Any], "dict[str, Any]"),
        (Optional[int], "int | None"),  # noqa: UP045
        (Union[int, str], "int | str"),  # noqa: UP007
        (Inner, "Inner{x: int, tags: list[str]}"),
        (Color, "enum['red', 'green']"),
        (File, "File"),
        (Directory, "Directory"),
        (list[dict[str, Inner | None]], "list[dict[str, Inner{x: int, tags: list[str]} | None]]"),
    ],
)
def test_literal_type_and_repr(hint: object, expected: str) -> None:
    lt = literal_type(hint, where="here")
    assert type_repr(lt) == expected


def test_literal_type_is_a_fresh_copy() -> None:
    a = literal_type(list[int], where="here")
    a.collection_type.simple = types_pb2.SIMPLE_TYPE_STRING
    assert type_repr(literal_type(list[int], where="here")) == "list[int]"


def test_record_type_fields_in_declaration_order() -> None:
    rec = literal_type(Outer, where="here").record_type
    assert rec.name == "Outer"
    assert [f.name for f in rec.fields] == [
        "inner",
        "maybe",
        "color",
        "when",
        "weights",
        "doc",
        "label",
    ]


UNSUPPORTED: list[tuple[object, str]] = [
    (set[int], "set[int]"),
    (typing.Set[int], "Set[int]"),  # noqa: UP006
    (tuple[int, str], "tuple[int, str]"),
    (Any, "Any"),
    (object, "object"),
    (list, "list"),
    (dict, "dict"),
    (typing.List, "List"),  # noqa: UP006
    (inspect.Parameter.empty, "missing annotation"),
    (dict[int, str], "dict[int, str]"),
    (list[set[int]], "set[int]"),
    (Optional[set[int]], "set[int]"),  # noqa: UP045
    (list[Any], "Any"),
    (NotADataclass, "NotADataclass"),
    (Level, "Level"),
    (Recursive, "Recursive"),
    (BadField, "BadField.s"),
    ("Inner", "Inner"),
    (Annotated[set[int], "x"], "set[int]"),
    (complex, "complex"),
]


@pytest.mark.parametrize(("hint", "fragment"), UNSUPPORTED, ids=lambda x: repr(x)[:40])
def test_unsupported_hint(hint: object, fragment: str) -> None:
    where = "task 'examples.f', input 'x'"
    with pytest.raises(PlaitTypeError) as info:
        literal_type(hint, where=where)
    msg = str(info.value)
    assert msg.startswith(where + ": unsupported type")
    assert fragment in msg
    assert "supported: int, float" in msg
    # The same hint fails the same way wherever a value is converted.
    with pytest.raises(PlaitTypeError, match="unsupported type"):
        to_literal(1, hint, var="x")


def test_unhashable_hint_is_handled() -> None:
    hint = Annotated[int, {"unhashable": []}]
    assert type_repr(literal_type(hint, where="w")) == "int"
    assert to_python(to_literal(3, hint, var="x"), hint, var="x") == 3


WRONG: list[tuple[object, object, list[str]]] = [
    ("a", int, ["n: expected int, got str"]),
    (True, int, ["expected int, got bool"]),
    (1.5, int, ["expected int, got float"]),
    (2**63, int, ["out of range"]),
    ("1.5", float, ["expected float, got str"]),
    (1, str, ["expected str, got int"]),
    (1, bool, ["expected bool, got int"]),
    ("x", bytes, ["expected bytes"]),
    (dt.date(2024, 1, 1), dt.datetime, ["expected datetime, got date"]),
    (5, dt.timedelta, ["expected timedelta"]),
    (dt.timedelta(days=10**8), dt.timedelta, ["out of range"]),
    (0, None, ["expected None, got int"]),
    (1.5, int | None, ["expected int | None, got float"]),
    ([1, "a"], list[int], ["n[1]: expected int, got str 'a'"]),
    ({"k": [1, "x"]}, dict[str, list[int]], ["n['k'][1]: expected int"]),
    ({1: 2}, dict[str, int], ["not a str"]),
    ("blue", Color, ["expected enum['red', 'green'], got str 'blue'"]),
    (Inner("s", []), Inner, ["n.x: expected int, got str"]),  # type: ignore[arg-type]
    ({"x": 1}, Inner, ["expected Inner{"]),
    ({"a": {1, 2}}, dict[str, Any], ["n['a']", "not a JSON value"]),
    ({"a": 2**60}, dict[str, Any], ["too large"]),
    (3, File, ["expected File, got int"]),
    ([1], list[int] | None, []),  # fits: control case
]


@pytest.mark.parametrize(("value", "hint", "fragments"), WRONG, ids=lambda x: repr(x)[:30])
def test_wrong_value(value: object, hint: object, fragments: list[str]) -> None:
    if not fragments:
        to_literal(value, hint, var="n")
        return
    with pytest.raises(PlaitTypeError) as info:
        to_literal(value, hint, var="n")
    msg = str(info.value)
    assert msg.startswith("n")
    for fragment in fragments:
        assert fragment in msg


def test_wrong_value_with_phrase_var() -> None:
    with pytest.raises(PlaitTypeError, match=r"^task 'f', input 'xs' at \[1\]: expected int"):
        to_literal([1, "a"], list[int], var="task 'f', input 'xs'")


def test_wrong_literal_names_var() -> None:
    lit = to_literal("a", str, var="s")
    with pytest.raises(PlaitTypeError, match=r"^y: expected int, got a string_value literal"):
        to_python(lit, int, var="y")
    with pytest.raises(PlaitTypeError, match="expected list"):
        to_python(lit, list[int], var="y")
    with pytest.raises(PlaitTypeError, match="empty literal"):
        to_python(literals_pb2.Literal(), Inner, var="y")
    bad_list = to_literal(["a", "b"], list[str], var="s")
    with pytest.raises(PlaitTypeError, match=r"^y\[0\]: expected int"):
        to_python(bad_list, list[int], var="y")
    with pytest.raises(PlaitTypeError, match="not a value of the enum"):
        to_python(to_literal("blue", str, var="s"), Color, var="y")


def test_to_python_tolerates_unwrapped_union_and_evolved_records() -> None:
    assert to_python(to_literal(5, int, var="v"), int | None, var="v") == 5
    old = to_literal(Inner(1, ["a"]), Inner, var="v")
    # A reader whose dataclass gained a defaulted field still reads old records.
    assert to_python(old, Outer | Inner, var="v") == Inner(1, ["a"])


def test_int_accepted_for_float_and_path_for_file() -> None:
    assert to_python(to_literal(2, float, var="v"), float, var="v") == 2.0
    f = to_python(to_literal("/tmp/x.csv", File, var="v"), File, var="v")
    assert f == File("/tmp/x.csv")


PARSE: list[tuple[str, object, object]] = [
    ("5", int, 5),
    (" -12 ", int, -12),
    ("2.5", float, 2.5),
    ("1e3", float, 1000.0),
    (" keep spaces ", str, " keep spaces "),
    ("true", bool, True),
    ("False", bool, False),
    ("1", bool, True),
    ("0", bool, False),
    ("yes", bool, True),
    ("no", bool, False),
    ("2024-01-02T03:04:05", dt.datetime, dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2024-01-02T03:04:05Z", dt.datetime, dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    (
        "2024-01-02T03:04:05+02:00",
        dt.datetime,
        dt.datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC),
    ),
    ("90", dt.timedelta, dt.timedelta(seconds=90)),
    ("1.5", dt.timedelta, dt.timedelta(seconds=1.5)),
    ("90s", dt.timedelta, dt.timedelta(seconds=90)),
    ("1h30m", dt.timedelta, dt.timedelta(hours=1, minutes=30)),
    ("2d3h4m5s", dt.timedelta, dt.timedelta(days=2, hours=3, minutes=4, seconds=5)),
    ("500ms", dt.timedelta, dt.timedelta(milliseconds=500)),
    ("-5m", dt.timedelta, dt.timedelta(minutes=-5)),
    ("01:30:00", dt.timedelta, dt.timedelta(hours=1, minutes=30)),
    ("PT1H30M", dt.timedelta, dt.timedelta(hours=1, minutes=30)),
    ("P1DT2H", dt.timedelta, dt.timedelta(days=1, hours=2)),
    ("abc", bytes, b"abc"),
    ("[1, 2]", list[int], [1, 2]),
    ("1,2,3", list[int], [1, 2, 3]),
    ("[]", list[int], []),
    ('{"a": 1.5}', dict[str, float], {"a": 1.5}),
    ('{"a": [1, "x", null]}', dict[str, Any], {"a": [1, "x", None]}),
    ('{"x": 1, "tags": ["a"]}', Inner, Inner(1, ["a"])),
    ("red", Color, Color.RED),
    ("GREEN", Color, Color.GREEN),
    ("none", Optional[int], None),  # noqa: UP045
    ("null", int | None, None),
    ("7", int | None, 7),
    ("5", str | int, 5),
    ("abc", str | int, "abc"),
    ('["a"]', list[str] | None, ["a"]),
    ("none", None, None),
    ("s3://bucket/key", File, File("s3://bucket/key")),
    ("/tmp/d", Directory, Directory("/tmp/d")),
    (
        '{"inner": {"x": 1, "tags": []}, "maybe": null, "color": "red", '
        '"when": "2024-01-01T00:00:00Z", "weights": {"a": 1}, "doc": {}}',
        Outer,
        Outer(Inner(1, []), None, Color.RED, dt.datetime(2024, 1, 1, tzinfo=UTC), {"a": 1.0}, {}),
    ),
]


@pytest.mark.parametrize(("text", "hint", "expected"), PARSE, ids=lambda x: repr(x)[:30])
def test_parse_text(text: str, hint: object, expected: object) -> None:
    got = parse_text(text, hint, var="arg")
    assert got == expected
    assert type(got) is type(expected)
    # Whatever the CLI parses must convert.
    to_literal(got, hint, var="arg")


PARSE_ERRORS: list[tuple[str, object]] = [
    ("abc", int),
    ("5.5", int),
    ("x", float),
    ("maybe", bool),
    ("yesterday", dt.datetime),
    ("1x", dt.timedelta),
    ("", dt.timedelta),
    ("[1, 'a']", list[int]),
    ('["a"]', list[int]),
    ('{"a": "x"}', dict[str, int]),
    ('{"x": 1}', Inner),
    ('{"x": 1, "tags": [], "zzz": 0}', Inner),
    ("blue", Color),
    ("abc", int | None),
    ("[1]", dict[str, Any]),
    ("x", None),
]


@pytest.mark.parametrize(("text", "hint"), PARSE_ERRORS, ids=lambda x: repr(x)[:30])
def test_parse_text_errors(text: str, hint: object) -> None:
    with pytest.raises(PlaitValueError, match=r"^arg: cannot parse"):
        parse_text(text, hint, var="arg")


def test_parse_text_unsupported_hint_is_a_type_error() -> None:
    with pytest.raises(PlaitTypeError, match="arg: unsupported type set"):
        parse_text("1", set[int], var="arg")


def test_struct_numbers() -> None:
    back = to_python(
        to_literal({"n": 3, "f": 0.5}, dict[str, Any], var="d"), dict[str, Any], var="d"
    )
    assert back == {"n": 3, "f": 0.5}
    assert isinstance(back, dict)
    assert type(back["n"]) is int


# -- by LiteralType: the converter for interfaces whose Python hints are not at hand -------------


def _plain(value: object) -> object:
    """What the by-type converter gives back for a value: records as dicts, enums as values."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_plain(x) for x in value]
    if isinstance(value, dict):
        return {k: _plain(x) for k, x in value.items()}
    return value


@pytest.mark.parametrize(("hint", "strategy"), CASES, ids=lambda x: repr(x)[:40])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_by_type_agrees_with_by_hint(
    hint: object, strategy: st.SearchStrategy[Any], data: st.DataObject
) -> None:
    value = data.draw(strategy)
    lt = literal_type(hint, where="v")
    by_hint = to_literal(value, hint, var="v")
    # The same value makes the same literal, byte for byte.
    assert to_literal_by_type(value, lt, var="v") == by_hint
    plain = _plain(value)
    assert to_literal_by_type(plain, lt, var="v") == by_hint
    # And reads back as the plain form of the value, which converts to the same literal again.
    wire = literals_pb2.Literal.FromString(by_hint.SerializeToString())
    back = to_python_by_type(wire, lt, var="v")
    assert back == plain
    again = to_literal_by_type(back, lt, var="v")
    if hint not in (dict[str, Any], Outer):  # JSON documents give whole floats back as int
        assert again == by_hint
    assert to_python_by_type(again, lt, var="v") == back


BY_TYPE_WRONG: list[tuple[object, object, str]] = [
    ([1, "a"], list[int], r"^n\[1\]: expected int, got str 'a'$"),
    ({"k": [1, "x"]}, dict[str, list[int]], r"^n\['k'\]\[1\]: expected int"),
    ({"x": 1}, Inner, r"^n: expected Inner\{x: int, tags: list\[str\]\}, .*'tags' is missing"),
    ({"x": 1, "tags": [], "zzz": 0}, Inner, r"^n: expected Inner\{.*Inner has no field 'zzz'"),
    ({"x": "s", "tags": []}, Inner, r"^n\.x: expected int, got str 's'"),
    ("blue", Color, r"^n: expected enum\['red', 'green'\], got str 'blue'"),
    (1.5, int | None, r"^n: expected int \| None, got float"),
    (3, File, r"^n: expected File, got int"),
    ({"a": 2**60}, dict[str, Any], r"too large"),
    (True, int, r"^n: expected int, got bool"),
]


@pytest.mark.parametrize(("value", "hint", "pattern"), BY_TYPE_WRONG, ids=lambda x: repr(x)[:30])
def test_by_type_wrong_value_names_the_variable_and_path(
    value: object, hint: object, pattern: str
) -> None:
    lt = literal_type(hint, where="n")
    with pytest.raises(PlaitTypeError, match=pattern):
        to_literal_by_type(value, lt, var="n")
    # The hint-based converter says the same wherever both refuse.
    if not isinstance(value, dict) or hint is not Inner:
        with pytest.raises(PlaitTypeError, match=pattern):
            to_literal(value, hint, var="n")


def test_by_type_reads_plainly() -> None:
    lt = literal_type(Outer, where="v")
    value = Outer(Inner(1, ["a"]), None, Color.GREEN, dt.datetime(2024, 1, 1, tzinfo=UTC),
                  {"w": 0.5}, {"doc": [1, None]})  # fmt: skip
    back = to_python_by_type(to_literal(value, Outer, var="v"), lt, var="v")
    assert back == {
        "inner": {"x": 1, "tags": ["a"]},
        "maybe": None,
        "color": "green",
        "when": dt.datetime(2024, 1, 1, tzinfo=UTC),
        "weights": {"w": 0.5},
        "doc": {"doc": [1, None]},
        "label": "default",
    }
    f = to_python_by_type(to_literal("s3://b/k", File, var="v"), literal_type(File, where="v"),
                          var="v")  # fmt: skip
    assert f == File("s3://b/k")
    d = literal_type(Directory, where="v")
    assert to_python_by_type(to_literal("/tmp/d", Directory, var="v"), d, var="v") == Directory(
        "/tmp/d"
    )
    with pytest.raises(PlaitTypeError, match=r"^y: expected int, got a string_value literal"):
        to_python_by_type(to_literal("a", str, var="v"), literal_type(int, where="y"), var="y")
    with pytest.raises(PlaitTypeError, match="offloaded literal"):
        offloaded = literals_pb2.Literal(offloaded=literals_pb2.OffloadedLiteral(uri="x"))
        to_python_by_type(offloaded, literal_type(int, where="y"), var="y")


def test_by_type_keeps_the_declared_type_whole() -> None:
    # A registered type may carry what hints never produce (a tag, a blob format); a union's
    # literal names its variant by the declared type, exactly.
    csv = types_pb2.LiteralType(
        blob=types_pb2.BlobType(
            format="csv", dimensionality=types_pb2.BlobType.BLOB_DIMENSIONALITY_SINGLE
        ),
        tag="t",
    )
    union = types_pb2.LiteralType(
        union_type=types_pb2.UnionType(
            variants=[csv, types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_NONE)]
        )
    )
    lit = to_literal_by_type("s3://b/x.csv", union, var="v")
    assert lit.scalar.union.type == csv
    assert lit.scalar.union.value.scalar.blob.type.format == "csv"
    assert to_python_by_type(lit, union, var="v") == File("s3://b/x.csv")
    assert to_python_by_type(to_literal_by_type(None, union, var="v"), union, var="v") is None


def test_by_type_refuses_unset_types_naming_the_variable() -> None:
    with pytest.raises(PlaitTypeError, match=r"^x: unsupported type <unset> \(the type is not"):
        to_literal_by_type(1, types_pb2.LiteralType(), var="x")
    nested = types_pb2.LiteralType(
        collection_type=types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_UNSPECIFIED)
    )
    with pytest.raises(PlaitTypeError, match=r"^x: unsupported type <unspecified>"):
        to_python_by_type(literals_pb2.Literal(), nested, var="x")


def test_literal_map_by_type() -> None:
    iface = interface_pb2.VariableMap(
        variables=[
            interface_pb2.Variable(name="n", type=literal_type(int, where="n")),
            interface_pb2.Variable(name="p", type=literal_type(Inner | None, where="p")),
        ]
    )
    lm = to_literal_map_by_type(iface, {"n": 3, "p": {"x": 1, "tags": []}})
    assert lm.literals["n"] == to_literal(3, int, var="n")
    assert lm.literals["p"] == to_literal(Inner(1, []), Inner | None, var="p")
    with pytest.raises(PlaitTypeError, match=r"unknown input 'q'; inputs are \['n', 'p'\]"):
        to_literal_map_by_type(iface, {"q": 1})
    with pytest.raises(PlaitTypeError, match=r"^n: expected int, got str"):
        to_literal_map_by_type(iface, {"n": "3"})


def test_parse_text_by_type() -> None:
    assert parse_text_by_type('{"x": 1, "tags": ["a"]}', literal_type(Inner, where="a"),
                              var="a") == {"x": 1, "tags": ["a"]}  # fmt: skip
    assert parse_text_by_type("red", literal_type(Color, where="a"), var="a") == "red"
    assert parse_text_by_type("1,2", literal_type(list[int], where="a"), var="a") == [1, 2]
    assert parse_text_by_type("none", literal_type(int | None, where="a"), var="a") is None
    with pytest.raises(PlaitValueError, match=r"^a: cannot parse 'blue' as enum"):
        parse_text_by_type("blue", literal_type(Color, where="a"), var="a")
