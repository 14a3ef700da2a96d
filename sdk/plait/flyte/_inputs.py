"""Inputs given on the command line (``--name value``), read as the launch plan's types."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

from plaitidl.core.v1 import interface_pb2 as pi
from plaitidl.core.v1 import types_pb2 as pt

from plait._errors import PlaitError


def parse_pairs(args: list[str]) -> dict[str, object]:
    """``--name value`` / ``--name=value`` pairs; values are JSON when they parse as JSON."""
    out: dict[str, object] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            if arg == "--":
                i += 1
                continue
            raise PlaitError(f"expected --INPUT VALUE, got {arg!r}")
        name, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args):
                raise PlaitError(f"input --{name} has no value")
            value = args[i + 1]
            i += 1
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value  # a bare string
        i += 1
    return out


def _coerce(value: Any, t: pt.LiteralType) -> Any:
    kind = t.WhichOneof("type")
    if kind == "simple" and isinstance(value, str):
        if t.simple == pt.SIMPLE_TYPE_DATETIME:
            when = datetime.datetime.fromisoformat(value)
            return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)
        if t.simple == pt.SIMPLE_TYPE_STRING:
            return value
    if kind == "simple" and t.simple == pt.SIMPLE_TYPE_DURATION and isinstance(value, int | float):
        return datetime.timedelta(seconds=value)
    if kind == "simple" and t.simple == pt.SIMPLE_TYPE_STRING and not isinstance(value, str):
        return json.dumps(value)  # `--name 12` for a string input means "12"
    if kind == "collection_type" and isinstance(value, list):
        return [_coerce(v, t.collection_type) for v in value]
    if kind == "map_value_type" and isinstance(value, Mapping):
        return {k: _coerce(v, t.map_value_type) for k, v in value.items()}
    if kind == "record_type" and isinstance(value, Mapping):
        types = {f.name: f.type for f in t.record_type.fields}
        return {k: _coerce(v, types[k]) if k in types else v for k, v in value.items()}
    if kind == "union_type" and value is not None:
        for variant in t.union_type.variants:
            if variant.WhichOneof("type") != "simple" or variant.simple != pt.SIMPLE_TYPE_NONE:
                return _coerce(value, variant)
    return value


def coerce(variables: pi.VariableMap, values: Mapping[str, object]) -> dict[str, object]:
    """Values from text (ISO datetimes, seconds) as the Python values the types want."""
    types = {v.name: v.type for v in variables.variables}
    return {k: _coerce(v, types[k]) if k in types else v for k, v in values.items()}
