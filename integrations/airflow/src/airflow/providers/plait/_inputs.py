"""Templated inputs to typed values: Jinja renders strings, the workflow wants ints and lists.

A string given for an input whose registered type cannot hold a string is parsed: ISO text for
datetimes, JSON for everything else (``"3"``, ``"[1, 2]"``, ``'{"a": 1}'``, ``"true"``). What
does not parse is passed on unchanged, and plait's conversion names the input that does not fit.
With ``render_template_as_native_obj=True`` on the DAG, templates render to Python values and
nothing needs parsing.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

from plaitidl.core.v1 import interface_pb2, types_pb2

_ST = types_pb2.SimpleType


def _holds_text(lt: types_pb2.LiteralType) -> bool:
    kind = lt.WhichOneof("type")
    if kind == "simple":
        return lt.simple == _ST.SIMPLE_TYPE_STRING
    if kind == "union_type":
        return any(_holds_text(v) for v in lt.union_type.variants)
    # Enums take their values and blobs their URIs as text.
    return kind in ("enum_type", "blob")


def _parse(text: str, lt: types_pb2.LiteralType) -> Any:
    if lt.WhichOneof("type") == "simple" and lt.simple == _ST.SIMPLE_TYPE_DATETIME:
        try:
            return datetime.datetime.fromisoformat(text)
        except ValueError:
            return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def typed_inputs(
    interface: interface_pb2.TypedInterface, inputs: Mapping[str, Any] | None
) -> dict[str, Any]:
    """`inputs` with rendered strings parsed for inputs that are not strings."""
    types = {v.name: v.type for v in interface.inputs.variables}
    out: dict[str, Any] = {}
    for name, value in (inputs or {}).items():
        lt = types.get(name)
        parse = isinstance(value, str) and lt is not None and not _holds_text(lt)
        out[name] = _parse(value, lt) if parse and lt is not None else value
    return out
