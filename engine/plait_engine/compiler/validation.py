"""Validation at the door: names, identifiers, nesting and labels. Pure functions, no I/O.

plait is shared: whatever one caller registers or yields, the engine must be able to store,
use as a path part, encode and send back, for every caller. These rules say what is accepted.

Identifiers (tasks, workflows, launch plans and every reference to one):

- project and domain: ``[A-Za-z0-9][A-Za-z0-9_-]{0,63}``; empty means the default
  (``default``, ``development``);
- name: ``[A-Za-z0-9_][A-Za-z0-9_.:<>-]{0,254}`` with no ``..`` (``<`` and ``>`` because the
  SDK names a nested function by its qualname, ``m.test.<locals>.f``);
- version: ``[A-Za-z0-9_][A-Za-z0-9_.=:+-]{0,127}`` with no ``..``; empty only in a reference,
  where it means the newest version.

None of them can hold NUL, ``/`` or a leading ``.``, so none can leave a folder when used as
a path part.

Node ids (workflows, dynamic specs, branch cases, array inner nodes):
``[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}`` (at most 63 characters as `workflow.proto` says, never
``.`` or ``..``), and not the reserved ``start-node``. An array node's inner node may leave its
id empty: the engine names the elements ``<parent>/<index>``.

Variable names in bindings: non-empty, at most `Limits.max_name_length` characters, no NUL and
no ``/``. (Interface variables are stricter: Python-like identifiers.)

Nesting: see `type_depth` and `literal_depth`; the limits are `Limits.max_type_depth` and
`Limits.max_literal_depth`.

Execution names: ``[A-Za-z0-9][A-Za-z0-9_-]{0,63}`` (empty: the engine generates one).

Labels: at most 64, keys ``[A-Za-z0-9][A-Za-z0-9_.-]*`` of at most 63 characters, values
at most 255 UTF-8 bytes without NUL, 16 KiB in all (see `labels_problems`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from google.protobuf import struct_pb2
from plaitidl.core.v1 import identifier_pb2, literals_pb2, types_pb2

from plait_engine.errors import FieldViolation
from plait_engine.ids import START_NODE

__all__ = [
    "EXECUTION_NAME_RULE",
    "NAME_RULE",
    "NODE_ID_RULE",
    "PROJECT_RULE",
    "VERSION_RULE",
    "Problem",
    "execution_name_problems",
    "identifier_problems",
    "labels_problems",
    "literal_depth",
    "literal_depth_problem",
    "literal_depth_problems",
    "node_id_problem",
    "show",
    "type_depth",
    "type_depth_problem",
    "variable_name_problem",
]

Problem = tuple[str, str]
"""A ``(field path, description)`` pair; the compiler turns them into `FieldViolation`s."""

# A leading letter, digit or '_' rules out '.', '..', hidden names and option-like '-x'.
PROJECT_RULE = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
NAME_RULE = r"[A-Za-z0-9_][A-Za-z0-9_.:<>-]{0,254}"
VERSION_RULE = r"[A-Za-z0-9_][A-Za-z0-9_.=:+-]{0,127}"
NODE_ID_RULE = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}"
EXECUTION_NAME_RULE = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
_LABEL_KEY_RULE = r"[A-Za-z0-9][A-Za-z0-9_.-]*"

_PROJECT = re.compile(PROJECT_RULE)
_NAME = re.compile(NAME_RULE)
_VERSION = re.compile(VERSION_RULE)
NODE_ID = re.compile(NODE_ID_RULE)
_EXECUTION_NAME = re.compile(EXECUTION_NAME_RULE)
_LABEL_KEY = re.compile(_LABEL_KEY_RULE)

_SHOW_LIMIT = 80
_NESTING_SCALARS = frozenset({"union", "generic"})


def show(value: str, limit: int = _SHOW_LIMIT) -> str:
    """`repr` of a caller's string for a message, shortened so that errors stay small.

    Args:
        value: The string.
        limit: Characters kept.

    Returns:
        ``'abc'``, or ``'abcd...'... (10000 characters)`` when longer than `limit`.
    """
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


# --------------------------------------------------------------------------------------------
# Identifiers, node ids, names


def _part_problem(what: str, value: str, pattern: re.Pattern[str], rule: str) -> str | None:
    if pattern.fullmatch(value) and ".." not in value:
        return None
    return f"{what} {show(value)} must match {rule} and contain no '..'"


def identifier_problems(
    id: identifier_pb2.Identifier, field: str, *, reference: bool = False
) -> list[Problem]:
    """Charset, length and presence of an identifier's project, domain, name and version.

    Args:
        id: The identifier.
        field: Its field path (``id``, ``nodes[2].task_node.task_id``).
        reference: Whether `id` refers to a template (an empty version then means newest)
            rather than naming the template being checked.

    Returns:
        Problems; empty when the identifier is acceptable.
    """
    out: list[Problem] = []
    for part in ("project", "domain"):
        value: str = getattr(id, part)
        p = _part_problem(part, value, _PROJECT, PROJECT_RULE) if value else None
        if p is not None:
            out.append((f"{field}.{part}", p))
    if not id.name:
        out.append((f"{field}.name", "the identifier has no name"))
    else:
        p = _part_problem("name", id.name, _NAME, NAME_RULE)
        if p is not None:
            out.append((f"{field}.name", p))
    if id.version:
        p = _part_problem("version", id.version, _VERSION, VERSION_RULE)
        if p is not None:
            out.append((f"{field}.version", p))
    elif not reference:
        out.append((f"{field}.version", "the identifier has no version"))
    return out


def node_id_problem(nid: str) -> str | None:
    """Why `nid` cannot be a node id (see the module docstring), or None."""
    if nid == START_NODE:
        return f"{START_NODE!r} is reserved for the enclosing inputs"
    if not NODE_ID.fullmatch(nid):
        return (
            f"node id {show(nid)} must match {NODE_ID_RULE} "
            "(no '/': the engine builds paths '<parent>/<child>')"
        )
    return None


def variable_name_problem(name: str, max_length: int) -> str | None:
    """Why `name` cannot name a variable in a binding, or None.

    Args:
        name: The name.
        max_length: Characters allowed (`Limits.max_name_length`).

    Returns:
        A description, or None when the name is acceptable.
    """
    if not name:
        return "the variable name is empty"
    if len(name) > max_length:
        return f"variable name {show(name)} is over the limit of {max_length} characters"
    if "\0" in name or "/" in name:
        return f"variable name {show(name)} contains NUL or '/'"
    return None


# --------------------------------------------------------------------------------------------
# Nesting


def type_depth(t: types_pb2.LiteralType) -> int:
    """How deeply a type nests: each list, map, union or record level counts one.

    ``int`` is 0, ``list[int]`` 1, ``dict[str, list[int | none]]`` 3. Iterative, so a type
    nested far deeper than Python's recursion limit is measured, not crashed on.

    Args:
        t: The type.

    Returns:
        The number of container levels on the deepest path.
    """
    deepest = 0
    stack: list[tuple[types_pb2.LiteralType, int]] = [(t, 0)]
    while stack:
        cur, d = stack.pop()
        kind = cur.WhichOneof("type")
        if kind == "collection_type":
            stack.append((cur.collection_type, d + 1))
        elif kind == "map_value_type":
            stack.append((cur.map_value_type, d + 1))
        elif kind == "union_type":
            stack.extend((v, d + 1) for v in cur.union_type.variants)
        elif kind == "record_type":
            stack.extend((f.type, d + 1) for f in cur.record_type.fields)
        else:
            deepest = max(deepest, d)
            continue
        deepest = max(deepest, d + 1)
    return deepest


def _json_depth(s: struct_pb2.Struct) -> int:
    deepest = 1
    stack: list[tuple[struct_pb2.Value, int]] = [(v, 1) for v in s.fields.values()]
    while stack:
        v, d = stack.pop()
        kind = v.WhichOneof("kind")
        if kind == "struct_value":
            deepest = max(deepest, d + 1)
            stack.extend((x, d + 1) for x in v.struct_value.fields.values())
        elif kind == "list_value":
            deepest = max(deepest, d + 1)
            stack.extend((x, d + 1) for x in v.list_value.values)
    return deepest


def _scalar_depth(
    sc: literals_pb2.Scalar, d: int, stack: list[tuple[literals_pb2.Literal, int]]
) -> int:
    kind = sc.WhichOneof("value")
    if kind == "union":
        stack.append((sc.union.value, d + 1))
        return d + 1 + type_depth(sc.union.type)
    if kind == "generic":
        return d + _json_depth(sc.generic)
    return d


def literal_depth(lit: literals_pb2.Literal) -> int:
    """How deeply a literal nests: each list, map, record, union value, JSON object or array
    counts one, and so do the levels of the types it carries (union and offloaded literals).

    Args:
        lit: The literal.

    Returns:
        The number of container levels on the deepest path.
    """
    kind = lit.WhichOneof("value")
    if kind == "scalar" and lit.scalar.WhichOneof("value") not in _NESTING_SCALARS:
        return 0  # the common case, a plain value
    deepest = 0
    stack: list[tuple[literals_pb2.Literal, int]] = [(lit, 0)]
    while stack:
        cur, d = stack.pop()
        kind = cur.WhichOneof("value")
        if kind == "collection":
            stack.extend((x, d + 1) for x in cur.collection.literals)
            d += 1
        elif kind == "map":
            stack.extend((x, d + 1) for x in cur.map.literals.values())
            d += 1
        elif kind == "record":
            stack.extend((f.value, d + 1) for f in cur.record.fields)
            d += 1
        elif kind == "scalar":
            d = _scalar_depth(cur.scalar, d, stack)
        elif kind == "offloaded":
            d += type_depth(cur.offloaded.type)
        deepest = max(deepest, d)
    return deepest


def type_depth_problem(t: types_pb2.LiteralType, max_depth: int) -> str | None:
    """Why `t` nests too deeply, or None (see `type_depth`)."""
    depth = type_depth(t)
    if depth <= max_depth:
        return None
    return f"the type is nested {depth} levels deep, over the limit of {max_depth}"


def literal_depth_problem(lit: literals_pb2.Literal, max_depth: int, base: int = 0) -> str | None:
    """Why `lit` nests too deeply, or None (see `literal_depth`).

    Args:
        lit: The literal.
        max_depth: The limit (`Limits.max_literal_depth`).
        base: Levels around it (binding lists and maps that will wrap it).

    Returns:
        A description, or None.
    """
    depth = base + literal_depth(lit)
    if depth <= max_depth:
        return None
    return f"the value is nested {depth} levels deep, over the limit of {max_depth}"


def literal_depth_problems(
    literal_map: literals_pb2.LiteralMap, field: str, max_depth: int
) -> list[FieldViolation]:
    """Violations for the literals of a map that nest deeper than `max_depth`.

    For execution inputs and worker results: a value the engine accepts must stay encodable
    once an assignment or a response wraps it.

    Args:
        literal_map: The literals, by name.
        field: Field path of the map (``inputs``, ``outputs``); a violation names
            ``<field>.<name>``.
        max_depth: The limit (`Limits.max_literal_depth`).

    Returns:
        One violation per literal over the limit, in name order.
    """
    out: list[FieldViolation] = []
    for name in sorted(literal_map.literals):
        p = literal_depth_problem(literal_map.literals[name], max_depth)
        if p is not None:
            out.append(FieldViolation(f"{field}.{name}", p))
    return out


# --------------------------------------------------------------------------------------------
# Executions


def execution_name_problems(name: str, field: str = "name") -> list[FieldViolation]:
    """Violations for an execution name; empty asks the engine to generate one.

    Args:
        name: The requested name.
        field: Its field path.

    Returns:
        At most one violation.
    """
    if not name or _EXECUTION_NAME.fullmatch(name):
        return []
    return [FieldViolation(field, f"execution name {show(name)} must match {EXECUTION_NAME_RULE}")]


def labels_problems(
    labels: Mapping[str, str],
    max_count: int = 64,
    max_key: int = 63,
    max_value: int = 255,
    max_total_bytes: int = 16 * 1024,
    field: str = "labels",
) -> list[FieldViolation]:
    """Violations for an execution's labels.

    Args:
        labels: Key to value.
        max_count: Labels allowed.
        max_key: Characters in a key (keys match ``[A-Za-z0-9][A-Za-z0-9_.-]*``).
        max_value: UTF-8 bytes in a value (values hold no NUL).
        max_total_bytes: UTF-8 bytes of all keys and values together.
        field: Field path of the labels; a violation names ``<field>.<key>``.

    Returns:
        The violations, bounded in number by `max_count` plus two.
    """
    out: list[FieldViolation] = []
    if len(labels) > max_count:
        out.append(FieldViolation(field, f"{len(labels)} labels, over the limit of {max_count}"))
    total = 0
    for key in sorted(labels):
        value = labels[key]
        size = len(value.encode("utf-8", "surrogatepass"))
        total += len(key.encode("utf-8", "surrogatepass")) + size
        if len(out) > max_count:
            continue  # keep counting the bytes; the count violation says enough
        if len(key) > max_key or not _LABEL_KEY.fullmatch(key):
            out.append(
                FieldViolation(
                    f"{field}[{show(key, 40)}]",
                    f"label key {show(key)} must match {_LABEL_KEY_RULE} "
                    f"and have at most {max_key} characters",
                )
            )
        elif size > max_value:
            out.append(
                FieldViolation(
                    f"{field}.{key}", f"label value is {size} bytes, over the limit of {max_value}"
                )
            )
        elif "\0" in value:
            out.append(FieldViolation(f"{field}.{key}", "label value contains NUL"))
    if total > max_total_bytes:
        out.append(
            FieldViolation(field, f"labels take {total} bytes, over the limit of {max_total_bytes}")
        )
    return out
